//! Sieve tokens (RFC 5228 §8.1): identifiers, tags, numbers, strings (quoted and `text:`),
//! punctuation, with comments and white space skipped and each token's position.
