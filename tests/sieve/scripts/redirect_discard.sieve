redirect "fwd@example.net";
discard;
