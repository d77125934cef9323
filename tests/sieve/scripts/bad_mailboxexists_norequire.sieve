if mailboxexists "x" { keep; }
