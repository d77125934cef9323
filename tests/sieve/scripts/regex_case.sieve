require ["fileinto", "regex"];
if header :regex "subject" "^meeting" {
  fileinto "yes";
} else {
  fileinto "no";
}
