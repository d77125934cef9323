require ["fileinto"];
if header :contains "from" "Jürgen" {
  fileinto "yes";
} else {
  fileinto "no";
}
