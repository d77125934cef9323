require "imap4flags";
addflag ["\\Seen", "\\Flagged"];
addflag "$Label1 Work";
