require ["fileinto", "date", "relational"];
if date :zone "+0000" :matches "date" "std11" "Mon, 7 Jan 2019*" {
  fileinto "yes";
} else {
  fileinto "no";
}
