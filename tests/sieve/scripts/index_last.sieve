require ["fileinto", "date", "relational", "index"];
if date :index 1 :last :originalzone :is "received" "zone" "-0700" {
  fileinto "yes";
} else {
  fileinto "no";
}
