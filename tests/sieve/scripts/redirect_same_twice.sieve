require "copy";
redirect :copy "fwd@example.net";
redirect "FWD@example.net";
