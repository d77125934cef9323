require ["include","fileinto"];
include "inc_part_ret";
fileinto "Main";
