require ["fileinto", "body"];
if body :comparator "i;octet" :contains "HOLIDAY" {
  fileinto "yes";
} else {
  fileinto "no";
}
