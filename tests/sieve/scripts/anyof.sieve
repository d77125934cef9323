require ["fileinto"];
if anyof(exists "list-id", header :contains "x-spam-flag" "YES") {
  fileinto "yes";
} else {
  fileinto "no";
}
