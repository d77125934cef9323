require ["fileinto", "body"];
if body :text :contains "holiday" {
  fileinto "yes";
} else {
  fileinto "no";
}
