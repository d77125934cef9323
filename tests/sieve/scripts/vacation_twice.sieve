require "vacation";
vacation "a";
vacation :handle "b" "b";
