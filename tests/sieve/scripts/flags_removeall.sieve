require ["imap4flags"];
setflag "\\Seen";
removeflag "\\Seen";
