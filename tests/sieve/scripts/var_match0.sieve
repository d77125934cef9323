require ["variables","fileinto"];
if header :matches "subject" "*" { set "s" "${0}"; }
if string :contains "${s}" "SPAM" { fileinto "Junk"; } else { fileinto "S:${s}"; }
