require ["fileinto"];
if address :domain :is "from" "example.org" {
  fileinto "yes";
} else {
  fileinto "no";
}
