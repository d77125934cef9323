require ["fileinto", "body"];
if body :content "text/plain" :contains "photos" {
  fileinto "yes";
} else {
  fileinto "no";
}
