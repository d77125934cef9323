require ["fileinto"];
if header :is "x-spam-flag" "YES" { fileinto "Junk"; stop; }
