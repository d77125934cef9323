require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :value "eq" :comparator "i;ascii-numeric" "x-count" "3" {
  fileinto "yes";
} else {
  fileinto "no";
}
