require ["fileinto", "relational", "envelope", "comparator-i;ascii-numeric"];
if envelope :count "eq" :comparator "i;ascii-numeric" "to" "1" {
  fileinto "yes";
} else {
  fileinto "no";
}
