require ["fileinto"];
if header :is "subject" "Meeting on Tuesday" {
  fileinto "yes";
} else {
  fileinto "no";
}
