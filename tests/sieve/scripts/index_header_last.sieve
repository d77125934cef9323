require ["fileinto", "date", "relational", "index"];
if header :index 1 :last :is "x-count" "3" {
  fileinto "yes";
} else {
  fileinto "no";
}
