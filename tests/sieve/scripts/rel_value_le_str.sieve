require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :value "le" :comparator "i;octet" "subject" "Meeting" {
  fileinto "yes";
} else {
  fileinto "no";
}
