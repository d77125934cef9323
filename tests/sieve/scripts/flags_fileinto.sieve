require ["imap4flags","fileinto"];
addflag "\\Seen";
fileinto "Work";
