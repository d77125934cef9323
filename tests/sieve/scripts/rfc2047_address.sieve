require ["fileinto"];
if address :is "from" "juergen@example.de" {
  fileinto "yes";
} else {
  fileinto "no";
}
