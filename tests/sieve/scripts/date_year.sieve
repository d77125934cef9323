require ["fileinto", "date", "relational"];
if date :is "date" "year" "2019" {
  fileinto "yes";
} else {
  fileinto "no";
}
