require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :count "gt" :comparator "i;ascii-numeric" ["x-tag","x-count"] ["1","5"] {
  fileinto "yes";
} else {
  fileinto "no";
}
