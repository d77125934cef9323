require ["fileinto", "envelope"];
if envelope :contains ["from","to"] "corp" {
  fileinto "yes";
} else {
  fileinto "no";
}
