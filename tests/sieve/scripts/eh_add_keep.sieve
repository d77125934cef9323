require ["editheader"];
addheader "X-Sieve" "1";
keep;
