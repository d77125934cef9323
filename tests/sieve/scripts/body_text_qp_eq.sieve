require ["fileinto", "body"];
if body :text :contains "equals sign = here" {
  fileinto "yes";
} else {
  fileinto "no";
}
