require ["fileinto", "body"];
if body :content "multipart" :contains "preamble" {
  fileinto "yes";
} else {
  fileinto "no";
}
