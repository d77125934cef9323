require ["fileinto", "subaddress"];
if address :detail :contains "from" "bob=example.com" {
  fileinto "yes";
} else {
  fileinto "no";
}
