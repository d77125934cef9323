require ["fileinto", "mailbox"];
if mailboxexists "Lists.dev" {
  fileinto "yes";
} else {
  fileinto "no";
}
