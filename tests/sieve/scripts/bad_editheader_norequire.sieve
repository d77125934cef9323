addheader "X" "y";
