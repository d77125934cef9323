if header :regex "subject" "x" { keep; }
