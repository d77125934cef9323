require ["fileinto"];
if address :domain :is "sender" "lists.example.org" {
  fileinto "yes";
} else {
  fileinto "no";
}
