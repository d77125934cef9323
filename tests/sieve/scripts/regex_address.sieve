require ["fileinto", "regex"];
if address :regex :domain "from" "^(spam|lists)\\." {
  fileinto "yes";
} else {
  fileinto "no";
}
