require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :value "gt" :comparator "i;ascii-numeric" "x-spam-score" "5" {
  fileinto "yes";
} else {
  fileinto "no";
}
