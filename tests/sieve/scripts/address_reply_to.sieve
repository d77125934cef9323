require ["fileinto"];
if address :is "reply-to" "dev@lists.example.org" {
  fileinto "yes";
} else {
  fileinto "no";
}
