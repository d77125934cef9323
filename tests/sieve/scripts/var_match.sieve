require ["variables","fileinto"];
if header :matches "subject" "* on *" { fileinto "M.${1}.${2}"; }
