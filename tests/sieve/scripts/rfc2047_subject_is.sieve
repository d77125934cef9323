require ["fileinto"];
if header :is "subject" "Grüße aus München" {
  fileinto "yes";
} else {
  fileinto "no";
}
