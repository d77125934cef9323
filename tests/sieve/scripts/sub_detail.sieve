require ["fileinto", "envelope", "subaddress"];
if envelope :detail "to" "work" {
  fileinto "yes";
} else {
  fileinto "no";
}
