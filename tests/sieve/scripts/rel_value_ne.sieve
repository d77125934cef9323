require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :value "ne" "x-priority" "3" {
  fileinto "yes";
} else {
  fileinto "no";
}
