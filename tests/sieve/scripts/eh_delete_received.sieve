require ["editheader","fileinto"];
deleteheader "received";
if exists "received" { fileinto "Protected"; } else { fileinto "Deleted"; }
