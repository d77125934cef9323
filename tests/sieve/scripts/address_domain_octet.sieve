require ["fileinto"];
if address :comparator "i;octet" :domain :is "cc" "Example.NET" {
  fileinto "yes";
} else {
  fileinto "no";
}
