require ["fileinto", "imap4flags"];
if hasflag "\\Seen" {
  fileinto "yes";
} else {
  fileinto "no";
}
