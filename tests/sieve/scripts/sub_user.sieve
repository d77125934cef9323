require ["fileinto", "envelope", "subaddress"];
if envelope :user "to" "bob" {
  fileinto "yes";
} else {
  fileinto "no";
}
