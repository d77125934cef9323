if currentdate :is "year" "2020" { keep; }
