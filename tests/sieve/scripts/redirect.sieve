redirect "fwd@example.net";
