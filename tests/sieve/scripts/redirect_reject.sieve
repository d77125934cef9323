require "reject";
redirect "fwd@example.net";
reject "no";
