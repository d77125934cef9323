require ["variables","fileinto"];
if address :matches "from" "?*@*" { fileinto "${1}-${2}-${3}"; }
