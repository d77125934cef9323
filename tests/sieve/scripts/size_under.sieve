require ["fileinto"];
if size :under 500 {
  fileinto "yes";
} else {
  fileinto "no";
}
