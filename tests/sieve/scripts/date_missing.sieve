require ["fileinto", "date", "relational"];
if date :is "x-nodate" "year" "2021" {
  fileinto "yes";
} else {
  fileinto "no";
}
