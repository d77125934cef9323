require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :value "lt" :comparator "i;ascii-numeric" "x-priority" "4" {
  fileinto "yes";
} else {
  fileinto "no";
}
