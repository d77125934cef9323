require ["fileinto", "subaddress"];
if address :user "cc" "dave" {
  fileinto "yes";
} else {
  fileinto "no";
}
