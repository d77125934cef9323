require ["fileinto", "date", "relational", "index"];
if address :index 1 :is "from" "alice@example.org" {
  fileinto "yes";
} else {
  fileinto "no";
}
