require ["fileinto"];
if header :matches "x-spam-level" "\\*\\**" {
  fileinto "yes";
} else {
  fileinto "no";
}
