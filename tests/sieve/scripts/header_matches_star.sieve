require ["fileinto"];
if header :matches "subject" "*on*" {
  fileinto "yes";
} else {
  fileinto "no";
}
