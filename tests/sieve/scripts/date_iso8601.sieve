require ["fileinto", "date", "relational"];
if date :zone "+0000" :is "date" "iso8601" "2019-01-07T09:00:00Z" {
  fileinto "yes";
} else {
  fileinto "no";
}
