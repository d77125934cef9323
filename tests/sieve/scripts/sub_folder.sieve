require ["envelope","subaddress","variables","fileinto","mailbox"];
if envelope :matches :detail "to" "*" {
  set :lower "tag" "${1}";
  if string :is "${tag}" "" { keep; }
  elsif mailboxexists "${tag}" { fileinto "${tag}"; }
  else { fileinto :create "Tags.${tag}"; }
}
