require ["imap4flags","fileinto"];
addflag "\\Seen";
fileinto :flags "\\Flagged" "Work";
