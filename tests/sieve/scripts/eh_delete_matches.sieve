require ["editheader","fileinto"];
deleteheader :matches "x-spam-*" "*";
if exists "x-spam-status" { fileinto "Still"; } else { fileinto "Gone"; }
