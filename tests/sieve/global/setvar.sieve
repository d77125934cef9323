require ["variables","include"];
global "g";
set "g" "fromglobal";
