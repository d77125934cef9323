require ["editheader","fileinto"];
addheader "X-Added" "yes";
if header :is "x-added" "yes" { fileinto "SeesAdded"; } else { fileinto "NoAdded"; }
