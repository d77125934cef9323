require ["fileinto", "envelope", "subaddress"];
if envelope :detail :is "to" "" {
  fileinto "yes";
} else {
  fileinto "no";
}
