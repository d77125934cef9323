require ["fileinto", "date", "relational"];
if currentdate :value "ge" "year" "2020" {
  fileinto "yes";
} else {
  fileinto "no";
}
