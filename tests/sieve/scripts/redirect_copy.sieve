require "copy";
redirect :copy "fwd@example.net";
