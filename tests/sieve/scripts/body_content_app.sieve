require ["fileinto", "body"];
if body :content "application/octet-stream" :contains "binaryattachmenttoken" {
  fileinto "yes";
} else {
  fileinto "no";
}
