require ["include","fileinto"];
fileinto "G1";
return;
fileinto "G2";
