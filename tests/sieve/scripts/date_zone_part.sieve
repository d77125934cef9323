require ["fileinto", "date", "relational"];
if date :is "date" "zone" "+0000" {
  fileinto "yes";
} else {
  fileinto "no";
}
