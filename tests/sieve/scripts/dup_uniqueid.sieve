require ["duplicate", "variables"];
if header :matches "message-id" "*" { set "id" "${1}"; }
if duplicate :uniqueid "${id}" :seconds 3600 :last { discard; }
