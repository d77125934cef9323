require ["variables","fileinto"];
set "h" "subject";
if header :contains "${h}" "Tues" { fileinto "hv"; }
