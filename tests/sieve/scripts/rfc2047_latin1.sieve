require ["fileinto"];
if header :contains "to" "Björn" {
  fileinto "yes";
} else {
  fileinto "no";
}
