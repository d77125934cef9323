require ["vacation", "date", "relational"];
if allof (currentdate :value "ge" "date" "2020-01-01", currentdate :value "le" "date" "2099-12-31") {
  vacation :days 7 :addresses "rcpt@example.com" :subject "Out of office" "I am away.";
}
