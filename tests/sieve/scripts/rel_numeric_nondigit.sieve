require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :value "gt" :comparator "i;ascii-numeric" "subject" "5" {
  fileinto "yes";
} else {
  fileinto "no";
}
