require ["fileinto", "date", "relational"];
if currentdate :zone "+0000" :value "gt" "date" "2020-01-01" {
  fileinto "yes";
} else {
  fileinto "no";
}
