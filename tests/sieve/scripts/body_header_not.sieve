require ["fileinto", "body"];
if body :text :contains "Subject:" {
  fileinto "yes";
} else {
  fileinto "no";
}
