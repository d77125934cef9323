require ["include","fileinto"];
include :optional "does_not_exist";
fileinto "After";
