require ["fileinto", "envelope"];
if envelope :localpart :matches "from" "b*" {
  fileinto "yes";
} else {
  fileinto "no";
}
