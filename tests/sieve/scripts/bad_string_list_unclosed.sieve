require ["fileinto";
