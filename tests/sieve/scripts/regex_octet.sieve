require ["fileinto", "regex"];
if header :regex :comparator "i;octet" "subject" "^meeting" {
  fileinto "yes";
} else {
  fileinto "no";
}
