require ["fileinto"];
if address :comparator "i;octet" :is "cc" "carol@example.net" {
  fileinto "yes";
} else {
  fileinto "no";
}
