require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :value "eq" :comparator "i;ascii-numeric" "subject" "x" {
  fileinto "yes";
} else {
  fileinto "no";
}
