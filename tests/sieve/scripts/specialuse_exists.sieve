require ["fileinto", "special-use"];
if specialuse_exists "\\Junk" {
  fileinto "yes";
} else {
  fileinto "no";
}
