if environment "location" "MS" { keep; }
