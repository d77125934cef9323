require ["fileinto"];
if size :under 645 {
  fileinto "yes";
} else {
  fileinto "no";
}
