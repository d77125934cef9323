require ["fileinto", "mailbox"];
if mailboxexists ["Junk","Work"] {
  fileinto "yes";
} else {
  fileinto "no";
}
