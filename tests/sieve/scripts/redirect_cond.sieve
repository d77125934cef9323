require ["copy", "envelope"];
if address :is "from" "alice@example.org" {
  redirect :copy "boss@example.net";
}
