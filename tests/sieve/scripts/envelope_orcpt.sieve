require ["fileinto", "envelope"];
if envelope :is "to" "orig+tag@example.com" {
  fileinto "yes";
} else {
  fileinto "no";
}
