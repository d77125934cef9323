require ["include","fileinto"];
include "inc_part_stop";
fileinto "AfterInclude";
