require ["fileinto", "date", "relational"];
if date :zone "+0000" :is "date" "weekday" "1" {
  fileinto "yes";
} else {
  fileinto "no";
}
