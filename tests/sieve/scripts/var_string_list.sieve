require ["fileinto", "variables"];
if string :contains ["abc","def"] "e" {
  fileinto "yes";
} else {
  fileinto "no";
}
