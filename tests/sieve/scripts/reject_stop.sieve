require "reject";
reject "bye";
stop;
