require ["fileinto","mailbox"];
fileinto :create "N";
fileinto "N";
