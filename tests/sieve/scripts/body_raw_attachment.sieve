require ["fileinto", "body"];
if body :raw :contains "binaryattachmenttoken" {
  fileinto "yes";
} else {
  fileinto "no";
}
