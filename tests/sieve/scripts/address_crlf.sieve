require ["fileinto"];
if address :is "to" "bob+work@example.com" {
  fileinto "yes";
} else {
  fileinto "no";
}
