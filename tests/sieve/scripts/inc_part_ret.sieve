require ["include","fileinto"];
if header :contains "subject" "Meeting" { return; }
fileinto "AfterReturn";
