require ["fileinto"];
if header :is "subject" "meeting ON tuesday" {
  fileinto "yes";
} else {
  fileinto "no";
}
