require ["fileinto", "date", "relational", "index"];
if header :index 9 :contains "received" "" {
  fileinto "yes";
} else {
  fileinto "no";
}
