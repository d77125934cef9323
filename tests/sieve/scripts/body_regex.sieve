require ["fileinto", "body", "regex"];
if body :text :regex "[0-9]{4}" {
  fileinto "yes";
} else {
  fileinto "no";
}
