require ["fileinto"];
if header :contains "subject" "=?UTF-8?" {
  fileinto "yes";
} else {
  fileinto "no";
}
