require ["fileinto"];
if header :contains "subject" "Grüße" {
  fileinto "yes";
} else {
  fileinto "no";
}
