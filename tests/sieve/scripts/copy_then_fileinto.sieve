require ["fileinto","copy"];
fileinto :copy "Work";
fileinto "Archive";
