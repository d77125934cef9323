require ["fileinto","imap4flags"];
# rule:[lists]
if anyof (header :contains "list-id" "dev.lists.example.org", header :contains "subject" "[dev]")
{
	fileinto "Lists.dev";
	stop;
}
# rule:[boss]
if address :is "from" "alice@example.org"
{
	addflag "\\Flagged";
	fileinto "Work";
}
