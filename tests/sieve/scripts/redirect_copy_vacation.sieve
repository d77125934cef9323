require ["copy", "vacation", "fileinto"];
redirect :copy "fwd@example.net";
vacation :days 1 "away";
fileinto "Work";
