require ["fileinto"];
if address :domain :contains "from" "example" {
  fileinto "yes";
} else {
  fileinto "no";
}
