require ["fileinto"];
if not true {
  fileinto "yes";
} else {
  fileinto "no";
}
