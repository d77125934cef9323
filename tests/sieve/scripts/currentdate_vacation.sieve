require ["fileinto", "date", "relational"];
if allof(currentdate :value "ge" "date" "2021-01-01", currentdate :value "le" "date" "2999-12-31") {
  fileinto "yes";
} else {
  fileinto "no";
}
