require ["fileinto", "environment"];
if environment :matches "host" "*" {
  fileinto "yes";
} else {
  fileinto "no";
}
