require ["include","fileinto"];
include "inc_part_broken";
fileinto "After";
