require "reject";
reject text:
Not accepted.
Second line.
.
;
