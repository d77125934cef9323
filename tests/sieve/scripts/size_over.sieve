require ["fileinto"];
if size :over 1K {
  fileinto "yes";
} else {
  fileinto "no";
}
