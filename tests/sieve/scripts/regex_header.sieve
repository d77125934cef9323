require ["fileinto", "regex"];
if header :regex "subject" "^Meet(ing)? on [A-Z][a-z]+day$" {
  fileinto "yes";
} else {
  fileinto "no";
}
