require ["fileinto", "date", "relational"];
if date :zone "+0100" :is "date" "time" "10:00:00" {
  fileinto "yes";
} else {
  fileinto "no";
}
