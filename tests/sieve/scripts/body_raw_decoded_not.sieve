require ["fileinto", "body"];
if body :raw :contains "invoice number" {
  fileinto "yes";
} else {
  fileinto "no";
}
