require ["fileinto","mailbox","variables","subaddress","envelope"];
if header :contains "X-Spam-Flag" "YES" { fileinto "Junk"; }
if allof (envelope :detail :matches "to" "*", header :contains "X-Spam-Flag" "") {
  set :lower :upperfirst "tag" "${1}";
  if mailboxexists "INBOX.${1}" { fileinto "INBOX.${1}"; }
  else { fileinto :create "INBOX.${tag}"; }
}
