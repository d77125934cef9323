require ["editheader","fileinto"];
deleteheader "subject";
if exists "subject" { fileinto "StillThere"; } else { fileinto "Gone"; }
