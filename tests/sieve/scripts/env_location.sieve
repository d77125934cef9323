require ["fileinto", "environment"];
if environment :is "location" "MS" {
  fileinto "yes";
} else {
  fileinto "no";
}
