require ["fileinto", "date", "relational"];
if date :zone "+0000" :is "date" "date" "2021-06-01" {
  fileinto "yes";
} else {
  fileinto "no";
}
