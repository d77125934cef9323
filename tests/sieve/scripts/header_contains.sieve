require ["fileinto"];
if header :contains "subject" "Tues" {
  fileinto "yes";
} else {
  fileinto "no";
}
