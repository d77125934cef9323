require ["fileinto", "date", "relational"];
if date :is "resent-date" "year" "2021" {
  fileinto "yes";
} else {
  fileinto "no";
}
