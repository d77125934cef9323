require ["fileinto", "body"];
if body :content "" :contains "Plain part" {
  fileinto "yes";
} else {
  fileinto "no";
}
