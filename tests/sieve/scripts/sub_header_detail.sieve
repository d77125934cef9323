require ["fileinto", "subaddress"];
if address :detail "cc" "lists" {
  fileinto "yes";
} else {
  fileinto "no";
}
