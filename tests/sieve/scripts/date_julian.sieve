require ["fileinto", "date", "relational"];
if date :originalzone :value "gt" "date" "julian" "58000" {
  fileinto "yes";
} else {
  fileinto "no";
}
