require ["fileinto", "date", "relational"];
if date :is "received" "year" "2021" {
  fileinto "yes";
} else {
  fileinto "no";
}
