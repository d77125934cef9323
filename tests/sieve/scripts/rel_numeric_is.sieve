require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :is :comparator "i;ascii-numeric" "x-spam-score" "007" {
  fileinto "yes";
} else {
  fileinto "no";
}
