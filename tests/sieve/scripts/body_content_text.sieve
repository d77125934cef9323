require ["fileinto", "body"];
if body :content "text" :contains "HTML part" {
  fileinto "yes";
} else {
  fileinto "no";
}
