require ["variables","fileinto","envelope","subaddress"];
if header :matches "list-id" "*<*.*>" { fileinto "Lists.${2}"; } else { fileinto "NotList"; }
