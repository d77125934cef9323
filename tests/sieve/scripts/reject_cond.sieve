require "reject";
if header :contains "x-spam-flag" "YES" { reject "spam"; }
