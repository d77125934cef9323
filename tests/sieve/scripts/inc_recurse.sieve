require ["include"];
include "inc_part_recurse";
