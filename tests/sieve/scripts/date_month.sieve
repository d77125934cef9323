require ["fileinto", "date", "relational"];
if date :is "date" "month" "05" {
  fileinto "yes";
} else {
  fileinto "no";
}
