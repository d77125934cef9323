require "vacation";
vacation :days 1000 "x";
