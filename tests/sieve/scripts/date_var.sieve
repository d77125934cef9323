require ["date","variables","fileinto"];
if date :zone "+0000" :matches "date" "date" "*" { fileinto "D${1}"; }
