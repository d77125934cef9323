require ["variables","fileinto"];
set "a.b" "x";
fileinto "${a.b}";
