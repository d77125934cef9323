require ["fileinto", "regex"];
if header :regex ["subject","list-id"] ["^zzz","<dev\\."] {
  fileinto "yes";
} else {
  fileinto "no";
}
