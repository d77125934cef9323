require ["fileinto", "regex"];
if header :regex "subject" "Gr.ße" {
  fileinto "yes";
} else {
  fileinto "no";
}
