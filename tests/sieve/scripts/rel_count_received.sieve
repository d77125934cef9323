require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :count "ge" :comparator "i;ascii-numeric" "received" "3" {
  fileinto "yes";
} else {
  fileinto "no";
}
