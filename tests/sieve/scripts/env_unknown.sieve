require ["fileinto", "environment"];
if environment :contains "no-such-item" "" {
  fileinto "yes";
} else {
  fileinto "no";
}
