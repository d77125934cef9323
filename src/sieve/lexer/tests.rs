//! Unit tests of the Sieve lexer (RFC 5228 §8.1).

use super::*;

fn toks(s: &str) -> Vec<Token> {
    tokenize(s).unwrap().into_iter().map(|(t, _)| t).collect()
}

fn lex_err(s: &str) -> CompileError {
    tokenize(s).unwrap_err()
}

#[test]
fn rfc5228_8_1_identifiers_are_case_insensitive() {
    assert_eq!(
        toks("FileInto"),
        vec![Token::Ident("fileinto".into()), Token::Eof]
    );
}

#[test]
fn rfc5228_8_1_tags_are_stored_lower_case_without_colon() {
    assert_eq!(
        toks(":Contains"),
        vec![Token::Tag("contains".into()), Token::Eof]
    );
    assert_eq!(lex_err(": is").message, "expected a tag name after ':'");
}

#[test]
fn rfc5228_2_4_1_number_quantifiers() {
    assert_eq!(
        toks("1 2K 3m 4G"),
        vec![
            Token::Number(1),
            Token::Number(2 << 10),
            Token::Number(3 << 20),
            Token::Number(4 << 30),
            Token::Eof
        ]
    );
}

#[test]
fn rfc5228_2_4_1_number_overflow_is_an_error() {
    assert_eq!(lex_err("99999999999999999999").message, "number too large");
    assert_eq!(lex_err("18446744073709551615G").message, "number too large");
    assert_eq!(
        toks("18446744073709551615"),
        vec![Token::Number(u64::MAX), Token::Eof]
    );
}

#[test]
fn rfc5228_2_4_2_quoted_string_escapes() {
    assert_eq!(
        toks(r#""a\\b\"c\d""#),
        vec![Token::Str("a\\b\"cd".into()), Token::Eof]
    );
}

#[test]
fn rfc5228_2_4_2_quoted_string_may_span_lines() {
    assert_eq!(
        toks("\"a\r\nb\""),
        vec![Token::Str("a\r\nb".into()), Token::Eof]
    );
}

#[test]
fn rfc5228_2_4_2_unterminated_string_is_an_error_at_its_start() {
    let e = lex_err("\n  \"abc");
    assert_eq!((e.pos.line, e.pos.column), (2, 3));
}

#[test]
fn rfc5228_2_4_2_multiline_string_with_dot_unstuffing() {
    let src = "text: # comment\r\nline1\r\n..dot\r\n.x\r\n.\r\n;";
    assert_eq!(
        toks(src),
        vec![
            Token::Str("line1\r\n.dot\r\n.x\r\n".into()),
            Token::Semicolon,
            Token::Eof
        ]
    );
    assert_eq!(
        toks("text:\n\n.\n"),
        vec![Token::Str("\n".into()), Token::Eof]
    );
}

#[test]
fn rfc5228_8_1_multiline_rest_of_line_must_be_blank_or_comment() {
    assert_eq!(
        lex_err("text: x\n.\n").message,
        "expected end of line after 'text:'"
    );
    assert!(lex_err("text:\nabc\n")
        .message
        .starts_with("unterminated multi-line string"));
}

#[test]
fn rfc5228_2_3_comments_are_skipped() {
    assert_eq!(
        toks("# hash\nkeep /* a\n * b */ ;"),
        vec![Token::Ident("keep".into()), Token::Semicolon, Token::Eof]
    );
    assert_eq!(lex_err("/* open").message, "unterminated '/*' comment");
}

#[test]
fn rfc5228_8_1_punctuation() {
    assert_eq!(
        toks("[](){},;"),
        vec![
            Token::LBracket,
            Token::RBracket,
            Token::LParen,
            Token::RParen,
            Token::LBrace,
            Token::RBrace,
            Token::Comma,
            Token::Semicolon,
            Token::Eof
        ]
    );
}

#[test]
fn positions_are_one_based_line_and_character_column() {
    let t = tokenize("keep;\r\n  \"é\" stop").unwrap();
    let p: Vec<(u32, u32)> = t.iter().map(|(_, p)| (p.line, p.column)).collect();
    assert_eq!(p, vec![(1, 1), (1, 5), (2, 3), (2, 7), (2, 11)]);
}

#[test]
fn rfc5228_2_4_2_source_must_be_utf8() {
    let e = check_utf8(b"keep;\n  \"\xff\"").unwrap_err();
    assert_eq!((e.pos.line, e.pos.column), (2, 4));
    assert_eq!(check_utf8("ok".as_bytes()).unwrap(), "ok");
}

#[test]
fn unexpected_character_is_an_error() {
    assert_eq!(lex_err("keep @").pos.column, 6);
}
