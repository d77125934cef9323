require "fileinto";
fileinto "Work";
redirect "fwd@example.net";
