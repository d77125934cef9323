require ["fileinto"];
if address :localpart :is "from" "alice" {
  fileinto "yes";
} else {
  fileinto "no";
}
