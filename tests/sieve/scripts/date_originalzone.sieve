require ["fileinto", "date", "relational"];
if date :originalzone :is "date" "zone" "-0700" {
  fileinto "yes";
} else {
  fileinto "no";
}
