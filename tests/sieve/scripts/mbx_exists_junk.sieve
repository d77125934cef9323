require ["fileinto", "mailbox"];
if mailboxexists "Junk" {
  fileinto "yes";
} else {
  fileinto "no";
}
