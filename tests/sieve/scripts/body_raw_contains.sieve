require ["fileinto", "body"];
if body :raw :contains "VGhlIGludm9pY2" {
  fileinto "yes";
} else {
  fileinto "no";
}
