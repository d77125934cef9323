require "vacation";
vacation :from "Alice Example <alice@example.org>" "x";
