require ["fileinto"];
if allof(exists "from", exists "to", header :contains "subject" "e") {
  fileinto "yes";
} else {
  fileinto "no";
}
