require ["fileinto"];
if address :contains "from" "Alice Example" {
  fileinto "yes";
} else {
  fileinto "no";
}
