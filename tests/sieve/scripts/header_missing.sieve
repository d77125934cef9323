require ["fileinto"];
if header :contains "x-missing" "" {
  fileinto "yes";
} else {
  fileinto "no";
}
