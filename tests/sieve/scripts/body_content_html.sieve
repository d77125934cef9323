require ["fileinto", "body"];
if body :content "text/html" :contains "photos" {
  fileinto "yes";
} else {
  fileinto "no";
}
