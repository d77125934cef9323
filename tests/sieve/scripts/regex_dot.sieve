require ["fileinto", "regex"];
if header :regex "x-spam-level" "^\\*{5,}$" {
  fileinto "yes";
} else {
  fileinto "no";
}
