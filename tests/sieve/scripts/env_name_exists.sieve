require ["fileinto", "environment"];
if environment :matches "name" "?*" {
  fileinto "yes";
} else {
  fileinto "no";
}
