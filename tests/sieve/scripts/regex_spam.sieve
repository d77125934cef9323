require ["fileinto", "regex"];
if header :regex "x-spam-status" "^Yes, score=[0-9]+" {
  fileinto "yes";
} else {
  fileinto "no";
}
