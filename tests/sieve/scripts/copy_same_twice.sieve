require ["fileinto","copy"];
fileinto :copy "Work";
fileinto "Work";
