require ["fileinto"];
if allof(true, false) {
  fileinto "yes";
} else {
  fileinto "no";
}
