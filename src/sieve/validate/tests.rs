//! Unit tests of the Sieve validator: one per RFC rule, and the RFCs' example scripts.

use super::*;

fn ok(src: &str) -> Script {
    match compile(src.as_bytes(), &Limits::default()) {
        Ok(s) => s,
        Err(e) => panic!("{src:?} does not compile: {e:?}"),
    }
}

fn errs(src: &str) -> Vec<String> {
    match compile(src.as_bytes(), &Limits::default()) {
        Ok(_) => panic!("{src:?} compiles"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

fn bad(src: &str, needle: &str) {
    let e = errs(src);
    assert!(
        e.iter().any(|m| m.contains(needle)),
        "{src:?}: {e:?} lacks {needle:?}"
    );
}

#[test]
fn limits_script_size_one_mib_plus_one_fails() {
    let src = vec![b' '; (1 << 20) + 1];
    let e = compile(&src, &Limits::default()).unwrap_err();
    assert!(e[0].message.contains("larger than the limit"), "{e:?}");
    let src = vec![b' '; 1 << 20];
    assert!(compile(&src, &Limits::default()).is_ok());
}

#[test]
fn rfc5228_2_4_2_non_utf8_script_is_an_error() {
    let e = compile(b"keep;\n\"\xc3(\"", &Limits::default()).unwrap_err();
    assert_eq!(e[0].to_string(), "2:2: script is not valid UTF-8");
}

#[test]
fn rfc5228_3_2_require_after_command_is_an_error() {
    bad(
        "keep;\nrequire \"fileinto\";",
        "2:1: 'require' must come before other commands",
    );
    bad(
        "if true { require \"fileinto\"; }",
        "'require' must come before",
    );
}

#[test]
fn rfc5228_3_2_unknown_extension_is_an_error() {
    bad("require \"x-foo\";", "1:9: unknown extension \"x-foo\"");
}

#[test]
fn unimplemented_extensions_are_not_supported_yet() {
    bad(
        "require [\"enotify\"];",
        "extension \"enotify\" is not supported yet",
    );
    bad("require \"foreverypart\";", "not supported yet");
}

#[test]
fn rfc5228_3_2_command_without_require_is_an_error() {
    bad(
        "fileinto \"x\";",
        "1:1: 'fileinto' needs require \"fileinto\"",
    );
    ok("require \"fileinto\"; fileinto \"x\";");
}

#[test]
fn rfc5228_3_1_elsif_and_else_only_after_if() {
    bad("else { keep; }", "'else' must follow 'if' or 'elsif'");
    bad("keep; elsif true { keep; }", "'elsif' must follow");
    bad("if true {} else {} else {}", "'else' must follow");
    ok("if false {} elsif true {} elsif false {} else {}");
}

#[test]
fn rfc5228_3_1_if_needs_a_test_and_a_block() {
    bad("if { keep; }", "'if' takes exactly one test");
    bad("if true;", "'if' needs a block");
    bad("keep { }", "'keep' takes no block");
}

#[test]
fn rfc5228_unknown_command_and_test() {
    bad("frobnicate;", "unknown command 'frobnicate'");
    bad("if frob { }", "unknown test 'frob'");
    bad("if keep { }", "'keep' is a command, not a test");
    bad("true;", "'true' is a test, not a command");
}

#[test]
fn rfc5228_4_base_commands() {
    ok("keep; discard; stop;");
    ok("redirect \"a@example.com\";");
    bad(
        "redirect;",
        "'redirect' takes 1 positional argument(s), found 0",
    );
    bad(
        "redirect [\"a\", \"b\"];",
        "expects a string here, found a string list",
    );
    bad("stop 1;", "'stop' takes 0 positional");
}

#[test]
fn rfc5228_5_base_tests() {
    ok("if address :all :is \"from\" \"a@b\" {}");
    ok("if header :contains [\"subject\"] [\"x\", \"y\"] {}");
    ok("if exists [\"from\", \"date\"] {}");
    ok("if allof (true, not false, anyof (true)) {}");
    bad("if header \"subject\" {}", "'header' takes 2 positional");
    bad("if not {}", "'not' takes exactly one test");
    bad("if allof {}", "'allof' needs a list of tests");
}

#[test]
fn rfc5228_5_9_size_needs_exactly_one_of_over_under() {
    ok("if size :over 100K {}");
    bad("if size 10 {}", "'size' needs one of :over or :under");
    bad("if size :over :under 10 {}", "only one size allowed");
    bad("if size :over \"10\" {}", "expects a number here");
}

#[test]
fn rfc5228_2_7_at_most_one_match_type_comparator_address_part() {
    bad(
        "if header :is :contains \"a\" \"b\" {}",
        "only one match allowed",
    );
    bad(
        "if address :all :domain \"a\" \"b\" {}",
        "only one address part allowed",
    );
    bad(
        "if header :comparator \"i;octet\" :comparator \"i;octet\" \"a\" \"b\" {}",
        "given twice",
    );
}

#[test]
fn rfc5228_2_6_2_tags_come_before_positional_arguments() {
    bad(
        "if header \"a\" :is \"b\" {}",
        "tag ':is' must come before the positional arguments",
    );
}

#[test]
fn rfc5228_unknown_tag_is_an_error() {
    bad(
        "if header :frob \"a\" \"b\" {}",
        "unknown tag ':frob' for 'header'",
    );
    bad("if exists :is \"a\" {}", "unknown tag ':is' for 'exists'");
}

#[test]
fn rfc5228_2_7_3_comparators() {
    ok("if header :comparator \"i;octet\" :is \"a\" \"b\" {}");
    ok("if header :comparator \"I;ASCII-CASEMAP\" :is \"a\" \"b\" {}");
    bad(
        "if header :comparator \"i;foo\" :is \"a\" \"b\" {}",
        "unknown comparator \"i;foo\"",
    );
    bad(
        "if header :comparator \"i;ascii-numeric\" \"a\" \"b\" {}",
        "needs require \"comparator-i;ascii-numeric\"",
    );
    ok("require \"comparator-i;ascii-numeric\"; if header :comparator \"i;ascii-numeric\" \"a\" \"1\" {}");
    bad(
        "if header :comparator [\"i;octet\"] \"a\" \"b\" {}",
        "':comparator' needs a string argument, found a string list",
    );
    bad(
        "if header :comparator {}",
        "':comparator' needs a string argument",
    );
}

#[test]
fn rfc5228_comparator_name_is_lower_cased_for_the_interpreter() {
    let s = ok("if header :comparator \"I;Octet\" \"a\" \"b\" {}");
    let t = &s.commands[0].tests[0];
    assert!(matches!(&t.args[1], Argument::Strings { values, .. } if values == &["i;octet"]));
}

#[test]
fn rfc4790_9_1_1_ascii_numeric_with_contains_or_matches_is_an_error() {
    let r = "require \"comparator-i;ascii-numeric\";";
    bad(
        &format!("{r} if header :contains :comparator \"i;ascii-numeric\" \"a\" \"1\" {{}}"),
        "cannot do ':contains'",
    );
    bad(
        &format!("{r} if header :matches :comparator \"i;ascii-numeric\" \"a\" \"1\" {{}}"),
        "cannot do ':matches'",
    );
    ok(&format!(
        "{r} if header :is :comparator \"i;ascii-numeric\" \"a\" \"1\" {{}}"
    ));
}

#[test]
fn rfc5228_2_4_2_4_encoded_character() {
    let s = ok("require [\"encoded-character\", \"fileinto\"]; fileinto \"${hex: 48 69}${unicode:1F600}${x}\";");
    assert!(
        matches!(&s.commands[1].args[0], Argument::Strings { values, .. } if values == &["Hi\u{1F600}${x}"])
    );
    let s = ok("require \"fileinto\"; fileinto \"${hex:48}\";");
    assert!(
        matches!(&s.commands[1].args[0], Argument::Strings { values, .. } if values == &["${hex:48}"])
    );
    bad(
        "require [\"encoded-character\", \"fileinto\"]; fileinto \"${unicode:D800}\";",
        "invalid code point",
    );
    bad(
        "require [\"encoded-character\", \"fileinto\"]; fileinto \"${hex:ff}\";",
        "not valid UTF-8",
    );
    let s = ok("require [\"encoded-character\", \"fileinto\"]; fileinto \"${hex:zz}\";");
    assert!(
        matches!(&s.commands[1].args[0], Argument::Strings { values, .. } if values == &["${hex:zz}"])
    );
}

#[test]
fn rfc5228_all_errors_are_reported_with_positions() {
    let e = errs("frob;\nkeep 1;\nif header :is :is \"a\" \"b\" {}");
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("1:1:"));
    assert!(e[1].starts_with("2:1:"));
    assert!(e[2].starts_with("3:"));
}

#[test]
fn rfc5228_4_1_fileinto_tags_need_their_extensions() {
    let r = "require \"fileinto\";";
    bad(
        &format!("{r} fileinto :copy \"a\";"),
        "':copy' needs require \"copy\"",
    );
    bad(
        &format!("{r} fileinto :flags \"\\\\Seen\" \"a\";"),
        "':flags' needs require \"imap4flags\"",
    );
    bad(
        &format!("{r} fileinto :create \"a\";"),
        "':create' needs require \"mailbox\"",
    );
    bad(
        &format!("{r} fileinto :specialuse \"\\\\Junk\" \"a\";"),
        "':specialuse' needs require \"special-use\"",
    );
    ok(
        "require [\"fileinto\", \"copy\", \"imap4flags\", \"mailbox\", \"special-use\"];
        fileinto :copy :flags [\"\\\\Seen\"] :create :specialuse \"\\\\Junk\" \"Junk\";",
    );
}

#[test]
fn rfc5429_reject_and_ereject() {
    ok("require \"reject\"; reject \"no\";");
    ok("require \"ereject\"; ereject text:\nno\n.\n;");
    bad("reject \"no\";", "'reject' needs require \"reject\"");
    bad("require \"reject\"; reject;", "takes 1 positional");
}

#[test]
fn rfc5228_5_4_envelope() {
    ok("require \"envelope\"; if envelope :all :is \"from\" \"a@b\" {}");
    bad(
        "if envelope \"from\" \"a\" {}",
        "'envelope' needs require \"envelope\"",
    );
    bad(
        "require \"envelope\"; if envelope \"cc\" \"a\" {}",
        "unknown envelope part \"cc\"",
    );
}

#[test]
fn rfc5233_subaddress_address_parts() {
    ok("require [\"envelope\", \"subaddress\"]; if envelope :detail \"to\" \"x\" {} if address :user \"to\" \"y\" {}");
    bad(
        "if address :detail \"to\" \"x\" {}",
        "':detail' needs require \"subaddress\"",
    );
}

#[test]
fn rfc3894_copy_on_redirect() {
    ok("require \"copy\"; redirect :copy \"a@b\";");
    bad("redirect :copy \"a@b\";", "':copy' needs require \"copy\"");
}

#[test]
fn rfc5232_imap4flags_commands_and_hasflag() {
    ok("require \"imap4flags\"; setflag \"\\\\Seen\"; addflag [\"a\", \"b\"]; removeflag \"a\"; keep :flags \"x\";
        if hasflag :contains \"a\" {}");
    bad(
        "require \"imap4flags\"; setflag \"v\" \"a\";",
        "the variable argument of 'setflag' needs require \"variables\"",
    );
    ok("require [\"imap4flags\", \"variables\"]; setflag \"v\" \"a\"; if hasflag [\"v\"] \"a\" {}");
    bad(
        "require [\"imap4flags\", \"variables\"]; setflag \"1v\" \"a\";",
        "invalid variable name",
    );
    bad(
        "require \"imap4flags\"; setflag;",
        "'setflag' takes 1 to 2 positional",
    );
}

#[test]
fn rfc5173_body() {
    ok("require \"body\"; if body :raw :contains \"x\" {} if body :content [\"text\"] :is \"y\" {} if body :text \"z\" {}");
    bad(
        "require \"body\"; if body :raw :text \"x\" {}",
        "only one transform allowed",
    );
    bad(
        "require \"body\"; if body :content :is \"x\" {}",
        "':content' needs a string list argument, found a tag",
    );
    bad("if body \"x\" {}", "'body' needs require \"body\"");
}

#[test]
fn rfc5229_4_set_modifiers_one_per_precedence() {
    ok("require \"variables\"; set :lower :upperfirst :quotewildcard :length \"a\" \"b\";");
    bad(
        "require \"variables\"; set :lower :upper \"a\" \"b\";",
        "only one modifier 40 allowed",
    );
    bad(
        "require \"variables\"; set :quoteregex \"a\" \"b\";",
        "':quoteregex' needs require \"regex\"",
    );
    ok("require [\"variables\", \"regex\"]; set :quoteregex \"a\" \"b\";");
}

#[test]
fn rfc5229_3_variable_names_are_checked() {
    bad(
        "require \"variables\"; set \"a-b\" \"x\";",
        "invalid variable name \"a-b\"",
    );
    bad(
        "require \"variables\"; set \"1\" \"x\";",
        "invalid variable name",
    );
    ok("require \"variables\"; set \"_a1\" \"x\";");
}

#[test]
fn rfc5229_5_string_test() {
    ok("require \"variables\"; if string :is \"${a}\" \"\" {}");
    bad(
        "if string \"a\" \"b\" {}",
        "'string' needs require \"variables\"",
    );
}

#[test]
fn rfc5231_relational_match_types() {
    ok("require \"relational\"; if header :value \"GT\" \"x\" \"1\" {} if header :count \"eq\" \"x\" \"1\" {}");
    bad(
        "require \"relational\"; if header :value \"gg\" \"x\" \"1\" {}",
        "unknown relation \"gg\"",
    );
    bad(
        "if header :count \"eq\" \"x\" \"1\" {}",
        "':count' needs require \"relational\"",
    );
}

#[test]
fn rfc5490_mailbox() {
    ok("require [\"mailbox\", \"fileinto\"]; if mailboxexists \"a\" { fileinto :create \"a\"; }");
    bad("if mailboxexists \"a\" {}", "needs require \"mailbox\"");
}

#[test]
fn rfc5260_date_and_currentdate() {
    ok("require \"date\"; if date :zone \"-0500\" :is \"date\" \"YEAR\" \"2020\" {} if currentdate :zone \"+0100\" :is \"weekday\" \"0\" {}");
    ok("require \"date\"; if date :originalzone \"date\" \"hour\" \"09\" {}");
    bad(
        "require \"date\"; if date :zone \"+0100\" :originalzone \"date\" \"year\" \"1\" {}",
        "only one zone allowed",
    );
    bad(
        "require \"date\"; if date \"date\" \"yr\" \"1\" {}",
        "unknown date part \"yr\"",
    );
    bad(
        "require \"date\"; if currentdate :zone \"0100\" \"year\" \"1\" {}",
        "invalid time zone",
    );
    bad(
        "require \"date\"; if currentdate :originalzone \"year\" \"1\" {}",
        "unknown tag ':originalzone'",
    );
}

#[test]
fn rfc5260_date_part_is_lower_cased_for_the_interpreter() {
    let s = ok("require \"date\"; if currentdate \"ISO8601\" \"x\" {}");
    assert!(
        matches!(&s.commands[1].tests[0].args[0], Argument::Strings { values, .. } if values == &["iso8601"])
    );
}

#[test]
fn rfc5260_6_index() {
    ok("require \"index\"; if header :index 2 :last \"received\" \"x\" {} if address :index 1 \"from\" \"a\" {}");
    bad(
        "if header :index 1 \"a\" \"b\" {}",
        "':index' needs require \"index\"",
    );
    bad(
        "require \"index\"; if header :last \"a\" \"b\" {}",
        "':last' needs ':index'",
    );
    bad(
        "require \"index\"; if header :index 0 \"a\" \"b\" {}",
        "':index' counts from 1",
    );
}

#[test]
fn rfc6609_include_return_global() {
    ok("require [\"include\", \"variables\"]; include :global :once :optional \"spam\"; global \"x\"; return;");
    bad(
        "require \"include\"; include :personal :global \"a\";",
        "only one location allowed",
    );
    bad(
        "require \"include\"; include \"a/b\";",
        "invalid script name",
    );
    bad("require \"include\"; include \"\";", "invalid script name");
    bad(
        "require \"include\"; global \"x\";",
        "'global' needs require \"variables\"",
    );
    bad("return;", "'return' needs require \"include\"");
    ok("require [\"include\", \"variables\"]; set \"global.x\" \"1\";");
}

#[test]
fn regex_draft_match_type_compiles_constant_keys() {
    let s = ok("require \"regex\"; if header :regex \"subject\" [\"^a+$\", \"b\"] {}");
    assert_eq!(s.prepared.regexes.len(), 2);
    let key_pos = s.commands[1].tests[0].args[2].pos();
    assert!(s
        .prepared
        .regexes
        .get(&(key_pos, 1))
        .unwrap()
        .is_match("xbx"));
    bad(
        "require \"regex\"; if header :regex \"subject\" \"(\" {}",
        "1:45:",
    );
    bad(
        "if header :regex \"a\" \"b\" {}",
        "':regex' needs require \"regex\"",
    );
    let s = ok("require [\"regex\", \"variables\"]; if header :regex \"subject\" \"${x}(\" {}");
    assert!(s.prepared.regexes.is_empty());
}

#[test]
fn rfc5183_environment() {
    ok("require \"environment\"; if environment :contains \"domain\" \"example\" {}");
    bad(
        "if environment \"a\" \"b\" {}",
        "needs require \"environment\"",
    );
}

#[test]
fn rfc5293_editheader() {
    ok("require \"editheader\"; addheader :last \"X-A\" \"v\"; deleteheader :index 1 :last :contains \"X-B\" \"v\"; deleteheader \"X-C\";");
    bad(
        "require \"editheader\"; addheader \"X A\" \"v\";",
        "invalid header field name \"X A\"",
    );
    bad(
        "require \"editheader\"; deleteheader \"X:\";",
        "invalid header field name",
    );
    bad(
        "require \"editheader\"; deleteheader :last \"X\";",
        "':last' needs ':index'",
    );
}

#[test]
fn rfc8579_special_use() {
    ok("require [\"special-use\", \"fileinto\"]; if specialuse_exists \"\\\\Junk\" {} if specialuse_exists \"Spam\" \"\\\\Junk\" {} fileinto :specialuse \"\\\\Junk\" \"Spam\";");
    bad(
        "if specialuse_exists \"\\\\Junk\" {}",
        "needs require \"special-use\"",
    );
}

#[test]
fn nesting_limit_is_an_error_not_a_stack_overflow() {
    let src = "if not ".repeat(200_000);
    assert!(compile(src.as_bytes(), &Limits::default()).is_err());
    let limits = Limits {
        max_nesting: 2,
        ..Limits::default()
    };
    assert!(compile(b"if true { if true { keep; } }", &limits).is_ok());
    assert!(compile(b"if true { if true { if true { keep; } } }", &limits).is_err());
}

#[test]
fn split_args_gives_tags_and_positionals() {
    let s = ok("if header :comparator \"i;octet\" :is \"a\" \"b\" {}");
    let a = split_args(&s.commands[0].tests[0].args);
    assert!(a.has("is"));
    assert!(matches!(
        a.tag_arg("comparator"),
        Some(Argument::Strings { .. })
    ));
    assert_eq!(a.positional.len(), 2);
}

// RFC 5228 §9 and extension RFC examples.

#[test]
fn rfc5228_9_examples_compile() {
    ok(r#"
       require ["fileinto"];

       if header :is "Sender" "owner-ietf-mta-filters@imc.org"
               {
               fileinto "filter";
               }
       elsif address :DOMAIN :is ["From", "To"] "example.com"
               {
               keep;
               }

       elsif anyof (NOT address :all :contains
                      ["To", "Cc", "Bcc"] "me@example.com",
                    header :matches "subject"
                      ["*make*money*fast*", "*university*dipl*mas*"])
               {
               fileinto "spam";
               }
       else
               {
               fileinto "personal";
               }
"#);
    ok(r#"require "fileinto";
if header :contains "from" "coyote" { discard; }
elsif header :contains ["subject"] ["$$$"] { discard; }
else { fileinto "INBOX"; }"#);
    ok(r#"if size :over 100k { discard; }
if anyof (size :over 1M, exists "x") { stop; }
if header :contains ["From"] ["coyote"] { redirect "acm@example.com"; }
if not exists ["From","Date"] { discard; }
if address :is :all "from" "tim@example.com" { discard; }
"#);
    ok("require \"envelope\"; if envelope :all :is \"from\" \"tim@example.com\" { discard; }");
    ok("if header :contains \"Subject\" \"$$$\" { discard; }\nkeep;\nif header :comparator \"i;octet\" :contains \"Subject\" \"MAKE MONEY FAST\" { discard; }");
}

#[test]
fn rfc5229_examples_compile() {
    ok(r#"require ["variables", "fileinto"];
if header :matches "List-ID" "*<*@*" {
    fileinto "INBOX.lists.${2}"; stop;
}
if header :matches "Subject" "[*] *" {
    fileinto "INBOX.lists.${1}"; stop;
}
if address :matches ["To", "Cc"] ["coyote@**.com",
        "wile@**.com"] {
    fileinto "INBOX.business.${2}"; stop;
} else {
}
set "honorific"  "Mr";
set "first_name" "Wile";
set "last_name"  "Coyote";
set "vacation" text:
Dear ${HONORIFIC} ${last_name},
I'm out, please leave a message after the meep.
.
;
set "a" "juMBlEd lETteRS";
set :length "b" "${a}";
set :lower "b" "${a}";
set :upperfirst "b" "${a}";
set :upperfirst :lower "b" "${a}";
set :quotewildcard "b" "Rock*";
set "state" "${state} pending";
if string :matches " ${state} " "* pending *" {
}
"#);
}

#[test]
fn rfc5232_examples_compile() {
    ok(r#"require ["imap4flags", "fileinto"];
if header :contains "from" "boss@frobnitzm.example.edu" {
    setflag "\\Flagged";
    fileinto :flags "\\Deleted" "INBOX.From Boss";
}
if header :contains "Disposition-Notification-To" "mel@example.com" {
    addflag "$MDNRequired";
}
if header :contains "from" "imap@cac.washington.example.edu" {
    removeflag "$MDNRequired";
    fileinto "INBOX.imap-list";
}
"#);
    ok(
        r#"require ["imap4flags", "variables", "relational", "comparator-i;ascii-numeric"];
if hasflag :contains "MyVar" "Junk" { addflag "MyFlags" "\\Seen"; }
if hasflag :count "ge" :comparator "i;ascii-numeric" "MyFlags" "2" { removeflag "MyFlags" "\\Seen"; }
"#,
    );
}

#[test]
fn rfc5173_rfc5231_rfc5260_rfc5293_rfc6609_examples_compile() {
    ok(r#"require ["body", "fileinto"];
if body :raw :contains "MAKE MONEY FAST" { discard; }
if body :content "text" :contains ["missile", "coordinates"] { fileinto "secrets"; }
if body :content "audio/mp3" :contains "" { fileinto "jukebox"; }
if body :text :contains "project schedule" { fileinto "project/schedule"; }
"#);
    ok(
        r#"require ["relational", "comparator-i;ascii-numeric", "fileinto"];
if header :value "lt" :comparator "i;ascii-numeric" ["x-priority"] ["3"] { fileinto "Priority"; }
elsif address :count "gt" :comparator "i;ascii-numeric" ["to"] ["5"] { fileinto "SPAM"; }
elsif address :value "gt" :all :comparator "i;ascii-casemap" ["from"] ["M"] { fileinto "From N-Z"; }
else { fileinto "From A-M"; }
if allof ( address :count "eq" :comparator "i;ascii-numeric" ["to", "cc"] ["1"],
           address :all :comparator "i;ascii-casemap" ["to", "cc"] ["me@foo.example.com"] )
{ fileinto "Only me"; }
"#,
    );
    ok(
        r#"require ["date", "relational", "fileinto", "variables", "index"];
if allof(header :is "from" "boss@example.com",
         date :value "ge" :originalzone "date" "hour" "09",
         date :value "lt" :originalzone "date" "hour" "17")
{ fileinto "urgent"; }
if anyof(date :is "received" "weekday" "0",
         date :is "received" "weekday" "6")
{ fileinto "weekend"; }
if currentdate :matches "date" "*" { set "date" "${1}"; }
if currentdate :matches "time" "*" { set "time" "${1}"; }
if date :value "gt" :index 2 :zone "-0500" "received" "iso8601" "2007-02-26T09:00:00-05:00" { redirect "aaa@example.com"; }
"#,
    );
    ok(r#"require ["editheader", "variables"];
if header :matches "Subject" "*" { deleteheader "Subject"; addheader "Subject" "[SPAM] ${1}"; }
addheader :last "X-Sieve-Filtered" "<kim@job.example.com>";
deleteheader :index 1 "X-Spam-Flag";
deleteheader :contains "X-Spam-Report" "Spam";
"#);
    ok(r#"require ["include", "variables", "relational"];
include :personal "always_allow";
include :global "spam_tests";
include :personal "spam_tests";
include :personal "mailing_lists";
global "test";
global "test_mailbox";
set "test" "$$";
include "subject_tests";
set "test" "Make money";
include :once :optional "subject_tests";
if string :count "eq" "${test_mailbox}" "1" { return; }
"#);
    ok(
        r#"require ["fileinto", "mailbox", "special-use", "environment", "reject", "regex", "copy"];
if environment :matches "name" "*dovecot*" { fileinto :specialuse "\\Junk" :create "Junk"; }
if header :regex "X-Spam-Status" "^Yes, score=[0-9]+" { fileinto :copy "Spam"; }
if header :contains "subject" "bad" { reject text:
  No thanks.
..
.
; }
"#,
    );
}

// Seeded fuzzing: random bytes and mutated scripts never panic.

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % (n.max(1) as u64)) as usize
    }
}

const CORPUS: &[&str] = &[
    "require [\"fileinto\", \"variables\", \"regex\", \"imap4flags\", \"relational\", \"date\", \"index\", \"encoded-character\"];\n",
    "if header :regex \"subject\" \"^(a|b)+$\" { fileinto \"${1}\"; }\n",
    "if allof (not exists \"x\", size :over 1K) { setflag \"v\" \"\\\\Seen\"; } elsif true { stop; } else { keep; }\n",
    "set :lower :length \"x\" text:\nabc\n..\n.\n;\n",
    "if date :index 1 :zone \"+0100\" :value \"ge\" \"date\" \"year\" \"2000\" {}\n",
    "/* c */ # d\n fileinto \"${hex:41}\";",
];

#[test]
fn fuzz_random_bytes_and_mutated_scripts_never_panic() {
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    let limits = Limits {
        max_nesting: 8,
        ..Limits::default()
    };
    let pieces: &[&[u8]] = &[
        b"{",
        b"}",
        b"(",
        b")",
        b"[",
        b"]",
        b",",
        b";",
        b"\"",
        b":",
        b"text:\n",
        b"\n.\n",
        b"${",
        b"\\",
        b"not ",
        b"if ",
        b"99999999999G",
        b"\xff",
        b"/*",
        b"#",
    ];
    for round in 0..3000 {
        let mut src: Vec<u8> = Vec::new();
        if round % 3 == 0 {
            for _ in 0..rng.below(200) {
                src.push(rng.next() as u8);
            }
        } else {
            for _ in 0..1 + rng.below(4) {
                src.extend_from_slice(CORPUS[rng.below(CORPUS.len())].as_bytes());
            }
            for _ in 0..rng.below(6) {
                let at = rng.below(src.len() + 1);
                match rng.below(3) {
                    0 => {
                        let p = pieces[rng.below(pieces.len())];
                        src.splice(at..at, p.iter().copied());
                    }
                    1 if at < src.len() => {
                        let end = (at + rng.below(8)).min(src.len());
                        src.drain(at..end);
                    }
                    _ => {
                        if let Some(b) = src.get_mut(at) {
                            *b = rng.next() as u8;
                        }
                    }
                }
            }
        }
        match compile(&src, &limits) {
            Ok(script) => {
                fn depth(c: &[Command]) -> usize {
                    c.iter()
                        .map(|c| 1 + c.block.as_deref().map_or(0, depth))
                        .max()
                        .unwrap_or(0)
                }
                assert!(depth(&script.commands) <= limits.max_nesting + 1);
            }
            Err(e) => {
                assert!(!e.is_empty() && e.len() <= MAX_ERRORS);
                assert!(e
                    .iter()
                    .all(|e| e.pos.line >= 1 && e.pos.column >= 1 && !e.message.contains('\n')));
            }
        }
    }
}

#[test]
fn rfc5228_2_4_2_2_header_names_must_be_field_names() {
    bad(
        "if header :is \"a b\" \"x\" {}",
        "invalid header field name \"a b\"",
    );
    bad(
        "if exists [\"ok\", \"\"] {}",
        "invalid header field name \"\"",
    );
    bad(
        "require \"date\"; if date \"da:te\" \"year\" \"1\" {}",
        "invalid header field name",
    );
    ok("require \"variables\"; if header :is \"${a b}\" \"x\" {}");
}

#[test]
fn rfc8579_special_use_flags_are_checked() {
    bad(
        "require [\"special-use\", \"fileinto\"]; fileinto :specialuse \"Junk\" \"Spam\";",
        "invalid special-use flag \"Junk\"",
    );
    bad(
        "require \"special-use\"; if specialuse_exists [\"\\\\Junk\", \"\\\\\"] {}",
        "invalid special-use flag",
    );
}

#[test]
fn large_inputs_compile_in_linear_time() {
    // Each of these would be quadratic with a naive scan; a 1 MiB script must stay fast.
    let start = std::time::Instant::now();
    let body = "${hex:".repeat(150_000);
    let src = format!("require [\"encoded-character\", \"fileinto\"]; fileinto \"{body}\";");
    assert!(compile(src.as_bytes(), &Limits::default()).is_ok());
    let names: Vec<String> = (0..60_000).map(|i| format!("\"x{i}\"")).collect();
    let src = format!("require [{}];", names.join(","));
    assert_eq!(
        compile(src.as_bytes(), &Limits::default())
            .unwrap_err()
            .len(),
        MAX_ERRORS
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn rfc5229_3_variable_references_only_special_with_variables() {
    // Without "variables", "${a b}" is a constant: checked (and refused) as a header name,
    // compiled as a regular expression.
    bad(
        "if header :is \"${a b}\" \"x\" {}",
        "invalid header field name \"${a b}\"",
    );
    bad(
        "require \"regex\"; if header :regex \"a\" \"${x}(\" {}",
        "invalid regular expression",
    );
    let s = ok("require [\"regex\", \"variables\"]; if header :regex \"a\" \"${x}\" {}");
    assert!(s.prepared.regexes.is_empty());
    ok("require \"variables\"; if header :is \"${a b}\" \"x\" {}");
}

#[test]
fn rfc5228_4_2_a_constant_redirect_address_is_checked_when_compiling() {
    bad("redirect \"not an address\";", "not a valid address");
    bad("redirect \"a@\";", "not a valid address");
    ok("redirect \"fwd@example.net\";");
    // With variables the check waits for the run.
    ok("require \"variables\"; set \"a\" \"x\"; redirect \"${a}\";");
}

#[test]
fn rfc5230_4_4_a_constant_vacation_from_is_checked_when_compiling() {
    bad(
        "require \"vacation\"; vacation :from \"nobody\" \"x\";",
        "is not an address",
    );
    ok("require \"vacation\"; vacation :from \"Alice <alice@example.org>\" \"x\";");
    ok("require \"vacation\"; vacation :from \"alice@example.org\" \"x\";");
}

#[test]
fn rfc6131_days_and_seconds_exclude_each_other_and_rfc7352_header_and_uniqueid_too() {
    bad(
        "require [\"vacation\", \"vacation-seconds\"]; vacation :days 1 :seconds 60 \"x\";",
        "",
    );
    bad(
        "require \"duplicate\"; if duplicate :header \"a\" :uniqueid \"b\" { stop; }",
        "",
    );
    ok("require \"duplicate\"; if duplicate :header \"a\" :seconds 60 :last { stop; }");
}
