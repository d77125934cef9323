require "variables";
set "to" "fwd";
redirect "${to}@example.net";
