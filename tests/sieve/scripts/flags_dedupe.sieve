require ["imap4flags"];
addflag "\\seen";
addflag "\\SEEN";
addflag "\\Seen foo foo";
