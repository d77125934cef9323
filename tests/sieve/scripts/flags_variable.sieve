require ["imap4flags","fileinto","variables"];
setflag "myflags" "\\Draft";
addflag "myflags" "x";
fileinto :flags "${myflags}" "V";
