require ["fileinto", "date", "relational"];
if date :zone "+0000" :is "date" "hour" "06" {
  fileinto "yes";
} else {
  fileinto "no";
}
