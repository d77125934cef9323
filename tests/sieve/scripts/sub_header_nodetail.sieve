require ["fileinto", "subaddress"];
if address :detail :matches "from" "*" {
  fileinto "yes";
} else {
  fileinto "no";
}
