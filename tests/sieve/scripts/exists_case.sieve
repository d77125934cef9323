require ["fileinto"];
if exists "X-SPAM-FLAG" {
  fileinto "yes";
} else {
  fileinto "no";
}
