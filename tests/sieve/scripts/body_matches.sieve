require ["fileinto", "body"];
if body :text :matches "*hunter?*" {
  fileinto "yes";
} else {
  fileinto "no";
}
