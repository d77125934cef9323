require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :value "gt" :comparator "i;ascii-numeric" "x-count" "10" {
  fileinto "yes";
} else {
  fileinto "no";
}
