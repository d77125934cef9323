require ["fileinto", "regex", "envelope"];
if envelope :regex "to" "\\+work@" {
  fileinto "yes";
} else {
  fileinto "no";
}
