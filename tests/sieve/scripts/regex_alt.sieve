require ["fileinto", "regex"];
if header :regex "subject" "(SPAM|dev)" {
  fileinto "yes";
} else {
  fileinto "no";
}
