require ["fileinto", "body"];
if body :text :contains "<b>" {
  fileinto "yes";
} else {
  fileinto "no";
}
