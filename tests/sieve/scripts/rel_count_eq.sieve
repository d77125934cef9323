require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :count "eq" :comparator "i;ascii-numeric" "x-tag" "2" {
  fileinto "yes";
} else {
  fileinto "no";
}
