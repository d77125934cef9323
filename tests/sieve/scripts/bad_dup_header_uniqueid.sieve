require "duplicate";
if duplicate :header "x" :uniqueid "y" { stop; }
