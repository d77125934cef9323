# hash comment
/* bracket
   comment */ require "fileinto"; /* inline */
if true { fileinto "C"; } # trailing
