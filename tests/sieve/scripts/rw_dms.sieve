require ["fileinto","copy","envelope","variables"];
if header :contains "subject" ["Release","budget"] { fileinto :copy "Archive"; }
if envelope :localpart :is "from" "promo" { discard; stop; }
if header :matches "From" "*<*@*>*" { set "dom" "${3}"; }
if string :is "${dom}" "example.org" { fileinto "Org"; }
