require "fileinto";
if exists "from" {
  if exists "cc" {
    if header :contains "cc" "example.net" { fileinto "Deep"; }
  } else { fileinto "NoCc"; }
}
