require ["fileinto"];
if exists "list-id" {
  fileinto "yes";
} else {
  fileinto "no";
}
