//! mbox store (under construction).
