require ["fileinto"];
if header :is "x-tag" "beta" {
  fileinto "yes";
} else {
  fileinto "no";
}
