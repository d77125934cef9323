require ["editheader","fileinto"];
deleteheader :is "x-tag" "alpha";
if header :is "x-tag" "alpha" { fileinto "Alpha"; } elsif header :is "x-tag" "beta" { fileinto "BetaOnly"; }
