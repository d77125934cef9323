require ["fileinto"];
if header :matches "subject" "Meeting" {
  fileinto "yes";
} else {
  fileinto "no";
}
