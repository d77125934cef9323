require ["fileinto", "date", "relational", "index"];
if date :index 2 :zone "+0000" :is "received" "date" "2021-06-01" {
  fileinto "yes";
} else {
  fileinto "no";
}
