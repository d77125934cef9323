require ["fileinto"];
if header :contains "x-priority" "" {
  fileinto "yes";
} else {
  fileinto "no";
}
