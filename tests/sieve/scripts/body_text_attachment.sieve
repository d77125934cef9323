require ["fileinto", "body"];
if body :text :contains "binaryattachmenttoken" {
  fileinto "yes";
} else {
  fileinto "no";
}
