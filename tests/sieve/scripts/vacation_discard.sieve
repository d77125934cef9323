require "vacation";
vacation "a";
discard;
