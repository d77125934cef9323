require ["fileinto", "date", "relational"];
if currentdate :value "lt" "year" "2001" {
  fileinto "yes";
} else {
  fileinto "no";
}
