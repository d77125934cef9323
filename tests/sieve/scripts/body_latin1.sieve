require ["fileinto", "body"];
if body :text :contains "Café" {
  fileinto "yes";
} else {
  fileinto "no";
}
