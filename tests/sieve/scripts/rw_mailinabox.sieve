require ["regex", "fileinto", "imap4flags"];
if allof (header :regex "X-Spam-Status" "^Yes") {
  setflag "\\Seen";
  fileinto "Spam";
  stop;
}
