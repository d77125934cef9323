require ["fileinto", "body"];
if body :is "x" {
  fileinto "yes";
} else {
  fileinto "no";
}
