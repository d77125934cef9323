require ["fileinto", "body"];
if body :raw :contains "pass=\r\nword" {
  fileinto "yes";
} else {
  fileinto "no";
}
