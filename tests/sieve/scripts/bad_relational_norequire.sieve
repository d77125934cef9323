if header :value "gt" "x" "1" { keep; }
