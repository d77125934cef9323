require "date";
if date :is "date" 1 "x" { keep; }
