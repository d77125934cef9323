require ["imap4flags","fileinto","variables","relational","comparator-i;ascii-numeric"];
setflag "v" "a b c";
if hasflag :count "eq" :comparator "i;ascii-numeric" "v" "3" { fileinto "Three"; }
