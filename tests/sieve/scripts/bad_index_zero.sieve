require ["index","date"];
if header :index 0 :is "x" "y" { keep; }
