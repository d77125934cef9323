require "fileinto";
if header :contains "subject" "SPAM" { fileinto "Junk"; }
elsif header :contains "subject" "[dev]" { fileinto "Lists"; }
elsif exists "x-priority" { fileinto "Prio"; }
else { fileinto "Other"; }
