require ["editheader","fileinto"];
addheader "X-Enc" "Grüße";
if header :is "x-enc" "Grüße" { fileinto "EncOk"; } else { fileinto "EncNo"; }
