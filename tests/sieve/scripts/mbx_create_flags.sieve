require ["fileinto","mailbox","imap4flags","copy"];
fileinto :create :copy :flags "\\Seen" "Junk";
