require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :value "ge" "subject" "M" {
  fileinto "yes";
} else {
  fileinto "no";
}
