require ["fileinto"];
if header :contains ["subject","x-spam-flag"] ["nothing","YES","Release"] {
  fileinto "yes";
} else {
  fileinto "no";
}
