require ["include","fileinto"];
fileinto "One";
return;
fileinto "Two";
