//! Unit tests of the Sieve parser (RFC 5228 §8.2/§8.3).

use super::*;

fn p(s: &str) -> Vec<Command> {
    parse(s, 32).unwrap()
}

fn perr(s: &str) -> CompileError {
    parse(s, 32).unwrap_err()
}

#[test]
fn rfc5228_8_3_command_with_arguments_and_test() {
    let c = p("if header :contains [\"a\", \"b\"] \"x\" { fileinto \"f\"; } else { keep; }");
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].name, "if");
    let t = &c[0].tests[0];
    assert_eq!(t.name, "header");
    assert_eq!(t.args.len(), 3);
    assert!(matches!(&t.args[0], Argument::Tag { name, .. } if name == "contains"));
    assert!(
        matches!(&t.args[1], Argument::Strings { values, single: false, .. } if values == &["a", "b"])
    );
    assert!(
        matches!(&t.args[2], Argument::Strings { values, single: true, .. } if values == &["x"])
    );
    let b = c[0].block.as_ref().unwrap();
    assert_eq!(b[0].name, "fileinto");
    assert_eq!(c[1].block.as_ref().unwrap()[0].name, "keep");
}

#[test]
fn rfc5228_8_3_test_list() {
    let c = p("if anyof (not true, size :over 1K) { stop; }");
    let t = &c[0].tests[0];
    assert_eq!(t.tests.len(), 2);
    assert_eq!(t.tests[0].tests[0].name, "true");
    assert!(matches!(
        t.tests[1].args[1],
        Argument::Number { value: 1024, .. }
    ));
}

#[test]
fn rfc5228_8_3_missing_semicolon_is_an_error() {
    let e = perr("keep \"x\"\n}");
    assert_eq!(e.message, "expected ';' after command arguments, found '}'");
    assert_eq!((e.pos.line, e.pos.column), (2, 1));
}

#[test]
fn rfc5228_8_3_unclosed_block_is_an_error() {
    assert!(perr("if true { keep;").message.starts_with("expected '}'"));
    assert!(perr("}").message.starts_with("unexpected"));
}

#[test]
fn rfc5228_8_2_empty_string_list_is_an_error() {
    assert!(perr("require [];").message.starts_with("expected a string"));
    assert!(perr("require [\"a\" \"b\"];")
        .message
        .starts_with("expected ',' or ']'"));
}

#[test]
fn rfc5228_8_3_test_list_needs_tests() {
    assert!(perr("if anyof () { }")
        .message
        .starts_with("expected a test"));
    assert!(perr("if anyof (true \"a\" ] { }")
        .message
        .starts_with("expected ',' or ')'"));
}

#[test]
fn block_nesting_is_bounded() {
    let deep = "if true {".repeat(5) + &"}".repeat(5);
    assert!(parse(&deep, 5).is_ok());
    let deeper = "if true {".repeat(6) + &"}".repeat(6);
    assert_eq!(
        parse(&deeper, 5).unwrap_err().message,
        "blocks nested deeper than 5"
    );
    let huge = "if true {".repeat(100_000);
    assert!(parse(&huge, 32).is_err());
}

#[test]
fn test_nesting_is_bounded() {
    let t = "not ".repeat(4) + "true";
    assert!(parse(&format!("if {t} {{}}"), 5).is_ok());
    let t = "not ".repeat(5) + "true";
    assert!(parse(&format!("if {t} {{}}"), 5).is_err());
    let t = "anyof(".repeat(100_000);
    assert!(parse(&format!("if {t}"), 32).is_err());
}

#[test]
fn empty_script_is_valid() {
    assert!(p("  # nothing\n").is_empty());
}
