require ["fileinto"];
if size :over 644 {
  fileinto "yes";
} else {
  fileinto "no";
}
