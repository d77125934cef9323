require ["fileinto"];
if header :is "x-note" "äöü plain" {
  fileinto "yes";
} else {
  fileinto "no";
}
