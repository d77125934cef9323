require ["fileinto"];
if header :comparator "i;octet" :is "subject" "meeting on tuesday" {
  fileinto "yes";
} else {
  fileinto "no";
}
