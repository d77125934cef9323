require ["fileinto"];
if address :is :all "from" "ALICE@example.ORG" {
  fileinto "yes";
} else {
  fileinto "no";
}
