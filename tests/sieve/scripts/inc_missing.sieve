require ["include","fileinto"];
include "does_not_exist";
fileinto "After";
