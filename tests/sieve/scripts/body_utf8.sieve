require ["fileinto", "body"];
if body :text :contains "Grüße" {
  fileinto "yes";
} else {
  fileinto "no";
}
