require ["fileinto"];
if size :under 20K {
  fileinto "yes";
} else {
  fileinto "no";
}
