require "ereject";
ereject "no";
