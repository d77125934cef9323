require "reject";
reject "Go away, spammer.";
