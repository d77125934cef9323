require ["fileinto", "envelope", "subaddress"];
if envelope :detail :matches "to" "*" {
  fileinto "yes";
} else {
  fileinto "no";
}
