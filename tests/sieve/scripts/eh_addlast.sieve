require ["editheader","fileinto","index"];
addheader :last "X-Tag" "gamma";
addheader "X-Tag" "first";
if header :index 1 :is "x-tag" "first" { fileinto "FirstOk"; }
if header :index 1 :last :is "x-tag" "gamma" { fileinto "LastOk"; }
