require ["variables","fileinto"];
if header :matches "subject" "*" { }
if header :contains "subject" "zzz" { }
fileinto "k${1}";
