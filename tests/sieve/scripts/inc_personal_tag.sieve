require "include";
include :personal "inc_part_a";
keep;
