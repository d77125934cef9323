require ["fileinto", "body"];
if body :contains "HOLIDAY" {
  fileinto "yes";
} else {
  fileinto "no";
}
