require ["fileinto"];
if address :matches "from" "*@spam.*" {
  fileinto "yes";
} else {
  fileinto "no";
}
