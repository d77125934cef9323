require ["variables","fileinto"];
if header :matches "subject" "Grüße *" { fileinto "${1}"; }
