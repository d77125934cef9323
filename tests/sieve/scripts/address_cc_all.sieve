require ["fileinto"];
if address :localpart :is "cc" "dave+lists" {
  fileinto "yes";
} else {
  fileinto "no";
}
