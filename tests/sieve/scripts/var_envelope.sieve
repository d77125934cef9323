require ["variables","fileinto","envelope"];
if envelope :matches "from" "*@*" { fileinto "${2}"; }
