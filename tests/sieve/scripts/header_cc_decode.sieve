require ["fileinto"];
if header :contains "cc" "Dave D." {
  fileinto "yes";
} else {
  fileinto "no";
}
