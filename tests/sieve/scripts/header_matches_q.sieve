require ["fileinto"];
if header :matches "x-priority" "?" {
  fileinto "yes";
} else {
  fileinto "no";
}
