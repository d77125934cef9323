require ["fileinto"];
if header :comparator "i;octet" :contains "subject" "tues" {
  fileinto "yes";
} else {
  fileinto "no";
}
