if header "subject" "x" :is { keep; }
