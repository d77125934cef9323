require ["fileinto"];
if exists ["from", "to", "date"] {
  fileinto "yes";
} else {
  fileinto "no";
}
