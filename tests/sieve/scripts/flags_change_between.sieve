require ["imap4flags","fileinto"];
setflag "\\Seen";
fileinto "A";
setflag "\\Deleted";
fileinto "B";
