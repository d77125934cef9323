require "include";
include :once "inc_part_a";
include :once "inc_part_a";
