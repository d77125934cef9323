require ["variables","fileinto"];
set "a" "1";
fileinto "\\${a}${a}$${a}${";
