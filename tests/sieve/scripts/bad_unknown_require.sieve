require "no-such-extension";
