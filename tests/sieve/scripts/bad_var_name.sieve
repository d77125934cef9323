require "variables";
set "1a" "b";
