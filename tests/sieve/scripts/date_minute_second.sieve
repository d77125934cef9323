require ["fileinto", "date", "relational"];
if date :originalzone :is "date" "second" "15" {
  fileinto "yes";
} else {
  fileinto "no";
}
