require ["fileinto", "envelope"];
if envelope :is "to" "rcpt@example.com" {
  fileinto "yes";
} else {
  fileinto "no";
}
