require "vacation";
vacation :mime :subject "Away" text:
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Bin im Urlaub.
.
;
