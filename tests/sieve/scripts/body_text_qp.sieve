require ["fileinto", "body"];
if body :text :contains "password is hunter2" {
  fileinto "yes";
} else {
  fileinto "no";
}
