if envelope "to" "x" { keep; }
