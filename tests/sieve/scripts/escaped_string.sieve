require "fileinto";
if header :is "x-test" "a\"b" { fileinto "E"; } else { fileinto "\\back"; }
