redirect "fwd@example.net";
keep;
