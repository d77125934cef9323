require ["fileinto"];
if address :contains "to" "undisclosed" {
  fileinto "yes";
} else {
  fileinto "no";
}
