require ["fileinto", "environment"];
if environment :is "phase" "post" {
  fileinto "yes";
} else {
  fileinto "no";
}
