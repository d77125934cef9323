require ["fileinto", "date", "relational"];
if date :is "date" "date" "2021-05-31" {
  fileinto "yes";
} else {
  fileinto "no";
}
