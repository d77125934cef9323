require ["fileinto", "variables"];
if string :is "${x}" "" {
  fileinto "yes";
} else {
  fileinto "no";
}
