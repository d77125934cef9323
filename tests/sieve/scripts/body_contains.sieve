require ["fileinto", "body"];
if body :contains "budget" {
  fileinto "yes";
} else {
  fileinto "no";
}
