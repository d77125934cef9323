require ["imap4flags","fileinto","regex"];
if header :regex "x-spam-status" "^Yes" { addflag "\\Seen"; fileinto "Junk"; }
