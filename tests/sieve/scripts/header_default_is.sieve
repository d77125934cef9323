require ["fileinto"];
if header "subject" "Dates" {
  fileinto "yes";
} else {
  fileinto "no";
}
