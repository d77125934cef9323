require ["fileinto"];
if header :comparator "i;octet" :matches "subject" "*SPAM*" {
  fileinto "yes";
} else {
  fileinto "no";
}
