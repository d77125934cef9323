require ["reject","fileinto"];
reject "no";
fileinto "Work";
