require "variables";
set :nope "a" "b";
