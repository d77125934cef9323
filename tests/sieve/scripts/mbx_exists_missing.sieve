require ["fileinto", "mailbox"];
if mailboxexists "Nonexistent" {
  fileinto "yes";
} else {
  fileinto "no";
}
