//! SQLite store (under construction).
