require ["fileinto", "date", "relational"];
if date :is "date" "day" "31" {
  fileinto "yes";
} else {
  fileinto "no";
}
