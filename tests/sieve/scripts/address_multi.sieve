require ["fileinto"];
if address :is ["to","cc"] "carol@example.net" {
  fileinto "yes";
} else {
  fileinto "no";
}
