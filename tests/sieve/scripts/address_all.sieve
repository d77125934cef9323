require ["fileinto"];
if address :is "from" "alice@example.org" {
  fileinto "yes";
} else {
  fileinto "no";
}
