require ["fileinto", "date", "relational", "index"];
if header :index 2 :contains "x-tag" "beta" {
  fileinto "yes";
} else {
  fileinto "no";
}
