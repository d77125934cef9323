require ["fileinto"];
if not anyof(exists "x-nothing", false) {
  fileinto "yes";
} else {
  fileinto "no";
}
