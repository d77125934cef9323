require ["fileinto", "mailbox"];
if mailboxexists ["Junk","Nope"] {
  fileinto "yes";
} else {
  fileinto "no";
}
