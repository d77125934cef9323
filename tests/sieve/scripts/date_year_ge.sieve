require ["fileinto", "date", "relational"];
if date :value "ge" "date" "year" "2020" {
  fileinto "yes";
} else {
  fileinto "no";
}
