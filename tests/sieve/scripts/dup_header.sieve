require ["duplicate", "fileinto"];
if duplicate :header "subject" :handle "subj" { fileinto "dup"; }
