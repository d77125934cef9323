require ["fileinto", "body"];
if body :text :contains "invoice number is 4421" {
  fileinto "yes";
} else {
  fileinto "no";
}
