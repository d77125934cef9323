//! Tests of the interpreter: one per RFC rule, and the RFCs' example scripts (rewritten
//! here after the RFCs' examples), run through `compile()` against a test [`Host`].

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use super::super::{
    compile, Action, Envelope, Host, IncludeError, IncludeLocation, Input, Limits, Outcome,
    RuntimeError, Script,
};
use super::{run, run_sequence};

/// In-memory folders, a special-use map and include scripts.
#[derive(Default)]
struct TestHost {
    folders: Vec<String>,
    special: Vec<(String, String)>,
    scripts: HashMap<(IncludeLocation, String), Arc<Script>>,
    broken: Vec<String>,
    /// The duplicate tracking list of earlier deliveries: (handle, id).
    seen: Vec<(String, String)>,
}

impl Host for TestHost {
    fn mailbox_exists(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("inbox") || self.folders.iter().any(|f| f == name)
    }
    fn special_use(&self, flag: &str) -> Option<String> {
        self.special
            .iter()
            .find(|(f, _)| f.eq_ignore_ascii_case(flag))
            .map(|(_, m)| m.clone())
    }
    fn duplicate(&self, handle: &str, id: &str) -> bool {
        self.seen.iter().any(|(h, i)| h == handle && i == id)
    }
    fn include(&self, location: IncludeLocation, name: &str) -> Result<Arc<Script>, IncludeError> {
        if self.broken.iter().any(|b| b == name) {
            return Err(IncludeError::Failed("does not compile".into()));
        }
        self.scripts
            .get(&(location, name.to_string()))
            .cloned()
            .ok_or(IncludeError::NotFound)
    }
}

fn script(src: &str) -> Script {
    match compile(src.as_bytes(), &Limits::default()) {
        Ok(s) => s,
        Err(e) => panic!("script does not compile: {e:?}\n{src}"),
    }
}

const MSG: &[u8] =
    b"Received: from mx.example.net by mail.example.com; Tue, 1 Jul 2003 10:52:37 +0200\r\n\
Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n\
From: Alice Example <alice@example.org>\r\n\
To: Bob <bob+lists@example.com>, carol@example.net\r\n\
Cc: dave@example.com\r\n\
Subject: =?UTF-8?Q?Caf=C3=A9?= make money fast\r\n\
List-Id: The Sieve list <sieve.lists.example.org>\r\n\
X-Spam-Score: 12\r\n\
X-Spam-Status: Yes, score=12.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hello Bob,\r\n\
this is the body with a secret word.\r\n";

/// One delivery's inputs.
struct T {
    envelope: Envelope,
    msg: Vec<u8>,
    host: TestHost,
    limits: Limits,
    env: Vec<(&'static str, String)>,
    now: i64,
    zone: i32,
}

impl T {
    fn new() -> T {
        T {
            envelope: Envelope {
                from: "alice@example.org".into(),
                to: "bob+lists@example.com".into(),
                orig_to: None,
                auth: None,
            },
            msg: MSG.to_vec(),
            host: TestHost::default(),
            limits: Limits::default(),
            env: vec![("domain", "example.com".into()), ("phase", "during".into())],
            // 2026-12-03 11:00:00 UTC, a Thursday.
            now: 1_796_295_600,
            zone: 60,
        }
    }

    fn msg(mut self, m: &[u8]) -> T {
        self.msg = m.to_vec();
        self
    }

    fn header(&self) -> &[u8] {
        let m = &self.msg[..];
        let end = m
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
            .or_else(|| m.windows(2).position(|w| w == b"\n\n").map(|p| p + 2));
        &m[..end.unwrap_or(m.len())]
    }

    fn with<R>(&self, f: impl FnOnce(&Input<'_>) -> R) -> R {
        let msg = &self.msg[..];
        let body = move || Ok(Box::new(std::io::Cursor::new(msg)) as Box<dyn Read>);
        let input = Input {
            envelope: &self.envelope,
            header: self.header(),
            size: self.msg.len() as u64,
            body: &body,
            now: self.now,
            zone_offset_minutes: self.zone,
            environment: &self.env,
            delimiters: "+",
            separator: '.',
            host: &self.host,
        };
        f(&input)
    }

    fn run(&self, src: &str) -> Result<Outcome, RuntimeError> {
        let s = script(src);
        self.with(|input| run(&s, input, &self.limits))
    }

    fn ok(&self, src: &str) -> Outcome {
        match self.run(src) {
            Ok(o) => o,
            Err(e) => panic!("run-time error {e}\n{src}"),
        }
    }

    fn fail(&self, src: &str) -> RuntimeError {
        match self.run(src) {
            Ok(o) => panic!("no run-time error: {o:?}\n{src}"),
            Err(e) => e,
        }
    }

    /// The actions in short: `keep`, `keep*` (implicit), `fileinto:F`, `reject:R`,
    /// `ereject:R`, `discard`; flags after a space.
    fn acts(&self, src: &str) -> Vec<String> {
        summary(&self.ok(src))
    }
}

fn summary(o: &Outcome) -> Vec<String> {
    o.actions
        .iter()
        .map(|a| {
            let (mut s, flags) = match a {
                Action::Keep { store, implicit } => (
                    if *implicit {
                        "keep*".to_string()
                    } else {
                        "keep".to_string()
                    },
                    store.flags.clone(),
                ),
                Action::FileInto(store) => (
                    format!("fileinto:{}", store.mailbox.clone().unwrap_or_default()),
                    store.flags.clone(),
                ),
                Action::Reject { reason, ereject } => (
                    format!("{}:{reason}", if *ereject { "ereject" } else { "reject" }),
                    Vec::new(),
                ),
                Action::Discard => ("discard".to_string(), Vec::new()),
                Action::Redirect(r) => (
                    format!(
                        "redirect:{}{}",
                        r.address,
                        if r.copy { " copy" } else { "" }
                    ),
                    Vec::new(),
                ),
                Action::Vacation(v) => (format!("vacation:{}s", v.seconds), Vec::new()),
            };
            if !flags.is_empty() {
                s.push(' ');
                s.push_str(&flags.join(" "));
            }
            s
        })
        .collect()
}

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn stored_header(o: &Outcome, i: usize) -> Option<String> {
    match o.actions.get(i)? {
        Action::Keep { store, .. } | Action::FileInto(store) => store
            .header
            .as_ref()
            .map(|h| String::from_utf8_lossy(h).into_owned()),
        _ => None,
    }
}

// ----- RFC 5228 -----

#[test]
fn rfc5228_2_10_2_implicit_keep_without_actions() {
    assert_eq!(T::new().acts("if false { discard; }"), v(&["keep*"]));
}

#[test]
fn rfc5228_2_10_2_implicit_keep_cancelled_by_fileinto() {
    assert_eq!(
        T::new().acts("require \"fileinto\"; fileinto \"Lists\";"),
        v(&["fileinto:Lists"])
    );
}

#[test]
fn rfc5228_2_10_2_implicit_keep_cancelled_by_discard() {
    assert_eq!(T::new().acts("discard;"), v(&["discard"]));
}

#[test]
fn rfc5228_2_10_2_explicit_keep_replaces_implicit_keep() {
    assert_eq!(T::new().acts("keep;"), v(&["keep"]));
}

#[test]
fn rfc5228_2_10_2_discard_not_listed_when_something_stores() {
    assert_eq!(
        T::new().acts("require \"fileinto\"; discard; fileinto \"A\";"),
        v(&["fileinto:A"])
    );
}

#[test]
fn rfc5228_2_10_3_two_fileinto_one_folder_one_copy() {
    assert_eq!(
        T::new().acts("require \"fileinto\"; fileinto \"A\"; fileinto \"B\"; fileinto \"A\";"),
        v(&["fileinto:A", "fileinto:B"])
    );
}

#[test]
fn rfc5228_2_10_3_keep_twice_one_copy() {
    assert_eq!(T::new().acts("keep; keep;"), v(&["keep"]));
}

#[test]
fn rfc5228_2_10_3_keep_and_fileinto_inbox_one_copy() {
    assert_eq!(
        T::new().acts("require \"fileinto\"; keep; fileinto \"INBOX\";"),
        v(&["keep"])
    );
}

#[test]
fn rfc5228_2_10_3_keep_and_implicit_keep_one_copy() {
    let t = T::new();
    let before = script("keep;");
    let user = script("if false { stop; }");
    let seq = t.with(|i| run_sequence(&[&before, &user], i, &t.limits));
    assert_eq!(seq.error, None);
    assert_eq!(summary(&seq.outcome), v(&["keep"]));
}

#[test]
fn rfc5228_3_1_if_elsif_else_takes_one_branch() {
    let src = "require \"fileinto\";
        if header :is \"x-spam-score\" \"1\" { fileinto \"one\"; }
        elsif header :is \"x-spam-score\" \"12\" { fileinto \"two\"; }
        elsif true { fileinto \"three\"; }
        else { fileinto \"four\"; }
        if false { fileinto \"five\"; } else { fileinto \"six\"; }";
    assert_eq!(T::new().acts(src), v(&["fileinto:two", "fileinto:six"]));
}

#[test]
fn rfc5228_3_3_stop_ends_the_script_with_implicit_keep() {
    assert_eq!(
        T::new().acts("require \"fileinto\"; stop; fileinto \"never\";"),
        v(&["keep*"])
    );
}

#[test]
fn rfc5228_5_2_allof_short_circuits() {
    // The second test would be a run-time error (an invalid regex built at run time).
    let src = "require [\"regex\", \"variables\"]; set \"bad\" \"(\";
        if allof (false, header :regex \"subject\" \"${bad}\") { discard; }";
    assert_eq!(T::new().acts(src), v(&["keep*"]));
    let src = "require [\"regex\", \"variables\"]; set \"bad\" \"(\";
        if allof (true, header :regex \"subject\" \"${bad}\") { discard; }";
    assert!(T::new().run(src).is_err());
}

#[test]
fn rfc5228_5_3_anyof_short_circuits() {
    let src = "require [\"regex\", \"variables\"]; set \"bad\" \"(\";
        if anyof (true, header :regex \"subject\" \"${bad}\") { discard; }";
    assert_eq!(T::new().acts(src), v(&["discard"]));
}

#[test]
fn rfc5228_5_8_not_inverts() {
    assert_eq!(
        T::new().acts("if not exists \"x-nothere\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(T::new().acts("if not true { discard; }"), v(&["keep*"]));
}

#[test]
fn rfc5228_5_1_address_parts() {
    let t = T::new();
    assert_eq!(
        t.acts("if address :localpart \"from\" \"alice\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("if address :domain :is \"to\" \"example.net\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("if address :all :is \"from\" \"alice@example.org\" { discard; }"),
        v(&["discard"])
    );
    // Display names are not part of the address.
    assert_eq!(
        t.acts("if address :contains \"from\" \" \" { discard; }"),
        v(&["keep*"])
    );
}

#[test]
fn rfc5228_2_7_2_header_compared_after_rfc2047_decoding() {
    assert_eq!(
        T::new().acts("if header :contains \"subject\" \"Café\" { discard; }"),
        v(&["discard"])
    );
}

#[test]
fn rfc5228_5_4_envelope_from_and_to() {
    let t = T::new();
    assert_eq!(
        t.acts("require \"envelope\"; if envelope :is \"from\" \"alice@example.org\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("require \"envelope\"; if envelope :domain :is \"to\" \"example.com\" { discard; }"),
        v(&["discard"])
    );
}

#[test]
fn rfc5228_5_4_envelope_null_sender_matches_empty_string() {
    let mut t = T::new();
    t.envelope.from = String::new();
    assert_eq!(
        t.acts("require \"envelope\"; if envelope :is \"from\" \"\" { discard; }"),
        v(&["discard"])
    );
    let t = T::new();
    assert_eq!(
        t.acts("require \"envelope\"; if envelope :is \"from\" \"\" { discard; }"),
        v(&["keep*"])
    );
}

#[test]
fn envelope_to_uses_the_original_recipient_when_given() {
    let mut t = T::new();
    t.envelope.orig_to = Some("info@example.com".into());
    assert_eq!(
        t.acts("require \"envelope\"; if envelope :is \"to\" \"info@example.com\" { discard; }"),
        v(&["discard"])
    );
}

#[test]
fn envelope_auth_is_the_auth_parameter() {
    let mut t = T::new();
    assert_eq!(
        t.acts("require \"envelope\"; if envelope :is \"auth\" \"alice@example.org\" { discard; }"),
        v(&["keep*"])
    );
    t.envelope.auth = Some("alice@example.org".into());
    assert_eq!(
        t.acts("require \"envelope\"; if envelope :is \"auth\" \"alice@example.org\" { discard; }"),
        v(&["discard"])
    );
}

#[test]
fn rfc5228_5_5_exists_needs_every_field() {
    let t = T::new();
    assert_eq!(
        t.acts("if exists [\"from\", \"to\"] { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("if exists [\"from\", \"x-none\"] { discard; }"),
        v(&["keep*"])
    );
}

#[test]
fn rfc5228_5_9_size_over_and_under() {
    let t = T::new();
    assert_eq!(t.acts("if size :over 10 { discard; }"), v(&["discard"]));
    assert_eq!(t.acts("if size :under 10 { discard; }"), v(&["keep*"]));
    assert_eq!(t.acts("if size :under 1M { discard; }"), v(&["discard"]));
}

#[test]
fn rfc5228_2_7_3_comparators() {
    let t = T::new();
    assert_eq!(
        t.acts("if header :is \"x-spam-status\" \"yes, SCORE=12.0\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(t.acts("if header :comparator \"i;octet\" :is \"x-spam-status\" \"yes, SCORE=12.0\" { discard; }"), v(&["keep*"]));
}

#[test]
fn rfc5228_2_7_1_match_types() {
    let t = T::new();
    assert_eq!(
        t.acts("if header :contains \"subject\" \"money\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("if header :matches \"subject\" \"*money?fast\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("if header :is \"subject\" \"money\" { discard; }"),
        v(&["keep*"])
    );
}

#[test]
fn rfc5228_5_7_header_missing_is_false() {
    assert_eq!(
        T::new().acts("if header :contains \"x-none\" \"\" { discard; }"),
        v(&["keep*"])
    );
}

/// After RFC 5228 §9: list mail to a folder, company mail kept, spam filed, the rest personal.
#[test]
fn rfc5228_9_example() {
    let src = "require \"fileinto\";
        if header :is \"Sender\" \"owner-list@example.org\" { fileinto \"filter\"; }
        elsif address :DOMAIN :is [\"From\", \"To\"] \"example.com\" { keep; }
        elsif anyof (not address :all :contains [\"To\", \"Cc\", \"Bcc\"] \"me@example.com\",
                     header :matches \"subject\" [\"*make*money*fast*\", \"*university*dipl*mas*\"]) {
            fileinto \"spam\";
        } else { fileinto \"personal\"; }";
    // To: has bob+lists@example.com, so the company branch keeps it.
    assert_eq!(T::new().acts(src), v(&["keep"]));
    let other = T::new()
        .msg(b"From: x@example.org\r\nTo: me@example.com.au\r\nSubject: hello\r\n\r\nhi\r\n");
    assert_eq!(other.acts(src), v(&["fileinto:personal"]));
    let spam =
        T::new().msg(b"From: x@example.org\r\nTo: you@example.net\r\nSubject: hi\r\n\r\nhi\r\n");
    assert_eq!(spam.acts(src), v(&["fileinto:spam"]));
}

// ----- RFC 5429 reject / ereject -----

#[test]
fn rfc5429_2_1_reject_cancels_implicit_keep() {
    assert_eq!(
        T::new().acts("require \"reject\"; reject \"no thanks\";"),
        v(&["reject:no thanks"])
    );
}

#[test]
fn rfc5429_ereject_is_marked() {
    let o = T::new().ok("require \"ereject\"; ereject \"go away\";");
    assert_eq!(
        o.actions,
        vec![Action::Reject {
            reason: "go away".into(),
            ereject: true
        }]
    );
}

#[test]
fn rfc5429_2_1_at_most_one_reject() {
    assert!(T::new()
        .run("require \"reject\"; reject \"a\"; reject \"b\";")
        .is_err());
}

#[test]
fn rfc5429_reject_with_fileinto_is_a_runtime_error() {
    let e = T::new().fail("require [\"reject\", \"fileinto\"]; fileinto \"A\";\nreject \"x\";");
    assert_eq!(e.pos.line, 2);
    assert!(T::new()
        .run("require [\"reject\", \"fileinto\"]; reject \"x\"; keep;")
        .is_err());
    assert!(T::new()
        .run("require [\"reject\", \"fileinto\", \"copy\"]; reject \"x\"; fileinto :copy \"A\";")
        .is_err());
}

#[test]
fn rfc5429_reject_with_discard_is_fine() {
    assert_eq!(
        T::new().acts("require \"reject\"; discard; reject \"x\";"),
        v(&["discard", "reject:x"])
    );
}

// ----- RFC 3894 copy -----

#[test]
fn rfc3894_fileinto_copy_keeps_implicit_keep() {
    assert_eq!(
        T::new().acts("require [\"fileinto\", \"copy\"]; fileinto :copy \"A\";"),
        v(&["fileinto:A", "keep*"])
    );
}

// ----- RFC 5233 subaddress -----

#[test]
fn rfc5233_4_user_and_detail() {
    let t = T::new();
    let src = "require [\"envelope\", \"subaddress\", \"fileinto\", \"variables\"];
        if envelope :detail :matches \"to\" \"*\" { fileinto \"tag.${1}\"; }";
    assert_eq!(t.acts(src), v(&["fileinto:tag.lists"]));
    assert_eq!(
        t.acts("require [\"subaddress\"]; if address :user \"to\" \"bob\" { discard; }"),
        v(&["discard"])
    );
}

#[test]
fn rfc5233_4_detail_absent_without_delimiter() {
    let mut t = T::new();
    t.envelope.to = "bob@example.com".into();
    assert_eq!(t.acts("require [\"envelope\", \"subaddress\"]; if envelope :detail :matches \"to\" \"*\" { discard; }"), v(&["keep*"]));
}

/// After RFC 5233 §6: mail to a +detail address filed by its detail.
#[test]
fn rfc5233_6_example() {
    let src = "require [\"envelope\", \"subaddress\", \"fileinto\"];
        if envelope :user \"to\" \"bob\" {
            if envelope :detail \"to\" \"lists\" { fileinto \"lists\"; }
            if envelope :detail \"to\" \"mom\" { fileinto \"family\"; }
        }";
    assert_eq!(T::new().acts(src), v(&["fileinto:lists"]));
}

// ----- RFC 5232 imap4flags -----

#[test]
fn rfc5232_implicit_keep_gets_final_internal_flags() {
    let src = "require \"imap4flags\"; setflag \"\\\\Seen\"; addflag [\"$Work\", \"\\\\seen\"]; addflag \"\\\\Flagged $x\"; removeflag \"$X\";";
    assert_eq!(T::new().acts(src), v(&["keep* \\Seen $Work \\Flagged"]));
}

#[test]
fn rfc5232_5_fileinto_uses_flags_at_the_time() {
    let src = "require [\"imap4flags\", \"fileinto\"]; addflag \"a\"; fileinto \"A\"; addflag \"b\"; keep;";
    assert_eq!(T::new().acts(src), v(&["fileinto:A a", "keep a b"]));
}

#[test]
fn rfc5232_5_flags_argument_overrides() {
    let src =
        "require [\"imap4flags\", \"fileinto\"]; addflag \"a\"; fileinto :flags \"x y x\" \"A\";";
    assert_eq!(T::new().acts(src), v(&["fileinto:A x y"]));
}

#[test]
fn rfc5232_duplicate_fileinto_takes_the_last_flags_as_pigeonhole() {
    let src = "require [\"imap4flags\", \"fileinto\"]; fileinto :flags \"a\" \"A\"; fileinto :flags \"b c\" \"A\";";
    assert_eq!(T::new().acts(src), v(&["fileinto:A b c"]));
    // Without :flags, each store takes the internal variable at its time.
    let src = "require [\"imap4flags\", \"fileinto\"]; addflag \"x\"; fileinto \"A\"; setflag \"y\"; fileinto \"A\";";
    assert_eq!(T::new().acts(src), v(&["fileinto:A y"]));
}

#[test]
fn rfc5232_keep_in_a_before_script_takes_the_final_implicit_flags() {
    let t = T::new();
    let before = script("require \"imap4flags\"; addflag \"a\"; keep;");
    let user = script("require \"imap4flags\"; addflag \"b\";");
    let seq = t.with(|i| run_sequence(&[&before, &user], i, &t.limits));
    assert_eq!(summary(&seq.outcome), v(&["keep a b"]));
}

#[test]
fn rfc5232_3_named_variables_and_hasflag() {
    let src = "require [\"imap4flags\", \"variables\", \"fileinto\"];
        setflag \"mine\" \"one two\"; addflag \"mine\" \"THREE one\"; removeflag \"mine\" \"two\";
        if hasflag :is \"mine\" \"three\" { fileinto \"F.${mine}\"; }";
    assert_eq!(T::new().acts(src), v(&["fileinto:F.one THREE"]));
}

#[test]
fn rfc5232_4_hasflag_internal_with_match_types_and_count() {
    let t = T::new();
    assert_eq!(t.acts("require \"imap4flags\"; addflag \"$Label1 \\\\Seen\"; if hasflag :contains \"label\" { discard; }"), v(&["discard"]));
    assert_eq!(
        t.acts("require [\"imap4flags\", \"relational\", \"comparator-i;ascii-numeric\"]; addflag \"a b c\"; if hasflag :count \"eq\" :comparator \"i;ascii-numeric\" \"3\" { discard; }"),
        v(&["discard"])
    );
}

/// After RFC 5232 §6: flags set in steps, then filed with the flags in effect.
#[test]
fn rfc5232_6_example() {
    let src = "require [\"imap4flags\", \"fileinto\"];
        if header :contains \"from\" \"alice@example.org\" { setflag \"\\\\Flagged\"; fileinto \"imp\"; removeflag \"\\\\Flagged\"; }
        if size :over 1 { addflag \"$Big\"; }";
    assert_eq!(T::new().acts(src), v(&["fileinto:imp \\Flagged"]));
}

// ----- RFC 5173 body -----

#[test]
fn rfc5173_body_text_contains() {
    let t = T::new();
    assert_eq!(
        t.acts("require \"body\"; if body :contains \"secret word\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("require \"body\"; if body :contains \"Subject\" { discard; }"),
        v(&["keep*"])
    );
}

#[test]
fn rfc5173_body_raw_and_content() {
    let t = T::new();
    assert_eq!(
        t.acts("require \"body\"; if body :raw :contains \"secret\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("require \"body\"; if body :content \"text\" :contains \"secret\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("require \"body\"; if body :content \"image\" :contains \"secret\" { discard; }"),
        v(&["keep*"])
    );
}

// ----- RFC 5229 variables -----

#[test]
fn rfc5229_4_set_modifiers_in_precedence_order() {
    let src = "require [\"variables\", \"fileinto\"]; set \"a\" \"juMBlEd lEttErS\";
        set :length \"b\" \"${a}\"; fileinto \"${b}\";
        set :lower \"b\" \"${a}\"; fileinto \"${b}\";
        set :upperfirst \"b\" \"${a}\"; fileinto \"${b}\";
        set :upperfirst :lower \"b\" \"${a}\"; fileinto \"${b}\";
        set :quotewildcard \"b\" \"Rock*\"; fileinto \"${b}\";
        set :length :upper \"b\" \"abc\"; fileinto \"${b}\";";
    assert_eq!(
        T::new().acts(src),
        v(&[
            "fileinto:15",
            "fileinto:jumbled letters",
            "fileinto:JuMBlEd lEttErS",
            "fileinto:Jumbled letters",
            "fileinto:Rock\\*",
            "fileinto:3"
        ])
    );
}

#[test]
fn rfc5229_3_unknown_variable_is_empty_and_names_case_insensitive() {
    let src = "require [\"variables\", \"fileinto\"]; set \"Name\" \"x\"; fileinto \"a${NAME}b${nothing}c\";";
    assert_eq!(T::new().acts(src), v(&["fileinto:axbc"]));
}

#[test]
fn rfc5229_3_2_match_variables_from_last_successful_match() {
    let src = "require [\"variables\", \"fileinto\"];
        if header :matches \"List-Id\" \"*<*.*>\" { set \"list\" \"${2}\"; }
        if header :matches \"subject\" \"nomatch*\" { set \"list\" \"wrong\"; }
        fileinto \"lists.${list}.${0}\";";
    // The failed second test leaves ${0} as the first one's whole value.
    assert_eq!(
        T::new().acts(src),
        v(&["fileinto:lists.sieve.The Sieve list <sieve.lists.example.org>"])
    );
}

#[test]
fn rfc5229_5_string_test_and_count() {
    let t = T::new();
    assert_eq!(
        t.acts(
            "require \"variables\"; set \"x\" \"abc\"; if string :is \"${x}\" \"abc\" { discard; }"
        ),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("require \"variables\"; if string :is \"${none}\" \"\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("require [\"variables\", \"relational\", \"comparator-i;ascii-numeric\"]; if string :count \"eq\" :comparator \"i;ascii-numeric\" [\"a\", \"\", \"b\"] \"2\" { discard; }"),
        v(&["discard"])
    );
}

#[test]
fn rfc5229_3_total_variable_size_is_bounded() {
    let mut t = T::new();
    t.limits.max_variable_size = 8;
    let o = t.ok("require [\"variables\", \"fileinto\"]; set \"a\" \"0123456\"; set \"b\" \"abcdef\"; fileinto \"${a}-${b}\";");
    assert_eq!(summary(&o), v(&["fileinto:0123456-a"]));
    assert!(o.notes.iter().any(|n| n.contains("truncated")));
}

/// After RFC 5229 §6: a subject tag filed by what the match captured.
#[test]
fn rfc5229_6_example() {
    let src = "require [\"fileinto\", \"variables\"];
        if header :matches \"List-Id\" \"*<*@*\" { fileinto \"INBOX.lists.${2}\"; stop; }
        if header :matches \"Subject\" \"*make*money*\" { fileinto \"spam.${2}\"; stop; }";
    assert_eq!(T::new().acts(src), v(&["fileinto:spam. "]));
}

#[test]
fn rfc5228_2_4_2_4_encoded_character() {
    let src = "require [\"encoded-character\", \"fileinto\"]; fileinto \"${hex:46 6f 6F}${unicode:2e 263a}\";";
    assert_eq!(T::new().acts(src), v(&["fileinto:Foo.\u{263a}"]));
}

// ----- RFC 5231 relational -----

#[test]
fn rfc5231_value_with_ascii_numeric() {
    let t = T::new();
    let src = "require [\"relational\", \"comparator-i;ascii-numeric\"]; if header :value \"ge\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"5\" { discard; }";
    assert_eq!(t.acts(src), v(&["discard"]));
    let src = "require [\"relational\", \"comparator-i;ascii-numeric\"]; if header :value \"lt\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"5\" { discard; }";
    assert_eq!(t.acts(src), v(&["keep*"]));
}

#[test]
fn rfc5231_count_on_header_and_address() {
    let t = T::new();
    let src = "require [\"relational\", \"comparator-i;ascii-numeric\"]; if address :count \"eq\" :comparator \"i;ascii-numeric\" [\"to\", \"cc\"] \"3\" { discard; }";
    assert_eq!(t.acts(src), v(&["discard"]));
    let src = "require [\"relational\", \"comparator-i;ascii-numeric\"]; if header :count \"eq\" :comparator \"i;ascii-numeric\" \"received\" \"1\" { discard; }";
    assert_eq!(t.acts(src), v(&["discard"]));
}

// ----- RFC 5490 mailbox -----

#[test]
fn rfc5490_mailboxexists_and_create() {
    let mut t = T::new();
    t.host.folders = v(&["Junk"]);
    assert_eq!(
        t.acts("require \"mailbox\"; if mailboxexists [\"Junk\", \"INBOX\"] { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("require \"mailbox\"; if mailboxexists \"Nope\" { discard; }"),
        v(&["keep*"])
    );
    let o = t.ok("require [\"mailbox\", \"fileinto\"]; fileinto :create \"New\";");
    match &o.actions[..] {
        [Action::FileInto(s)] => assert!(s.create),
        other => panic!("{other:?}"),
    }
}

// ----- RFC 5260 date, index, currentdate -----

#[test]
fn rfc5260_5_currentdate_in_the_local_zone() {
    let t = T::new();
    assert_eq!(
        t.acts("require \"date\"; if currentdate :is \"year\" \"2026\" { discard; }"),
        v(&["discard"])
    );
    // 11:00 UTC is 12:00 in the +0100 local zone.
    assert_eq!(
        t.acts("require \"date\"; if currentdate :is \"hour\" \"12\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("require \"date\"; if currentdate :zone \"+0000\" :is \"hour\" \"11\" { discard; }"),
        v(&["discard"])
    );
}

#[test]
fn rfc5260_4_date_header_zones() {
    let t = T::new();
    assert_eq!(
        t.acts("require \"date\"; if date :originalzone :is \"date\" \"hour\" \"10\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts(
            "require \"date\"; if date :zone \"+0000\" :is \"date\" \"hour\" \"08\" { discard; }"
        ),
        v(&["discard"])
    );
    // Without :zone, the local zone (+0100).
    assert_eq!(
        t.acts("require \"date\"; if date :is \"date\" \"hour\" \"09\" { discard; }"),
        v(&["discard"])
    );
}

#[test]
fn rfc5260_4_date_from_received_after_the_semicolon() {
    assert_eq!(
        T::new().acts("require \"date\"; if date :is \"received\" \"year\" \"2003\" { discard; }"),
        v(&["discard"])
    );
}

#[test]
fn rfc5260_6_index_and_last() {
    let t = T::new().msg(b"X-A: one\r\nX-A: two\r\nX-A: three\r\n\r\nbody\r\n");
    assert_eq!(
        t.acts("require \"index\"; if header :index 2 :is \"x-a\" \"two\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("require \"index\"; if header :index 1 :last :is \"x-a\" \"three\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("require \"index\"; if header :index 1 :is \"x-a\" \"two\" { discard; }"),
        v(&["keep*"])
    );
}

/// After RFC 5260 §7: a vacation-style check of whether the date is inside a period.
#[test]
fn rfc5260_7_example() {
    let src = "require [\"date\", \"relational\", \"fileinto\"];
        if allof (currentdate :value \"ge\" \"date\" \"2026-12-01\", currentdate :value \"le\" \"date\" \"2026-12-31\") { fileinto \"away\"; }
        if date :value \"lt\" :originalzone \"date\" \"hour\" \"09\" { fileinto \"early\"; }";
    assert_eq!(T::new().acts(src), v(&["fileinto:away"]));
}

// ----- RFC 6609 include -----

fn with_scripts(list: &[(IncludeLocation, &str, &str)]) -> T {
    let mut t = T::new();
    for (loc, name, src) in list {
        t.host
            .scripts
            .insert((*loc, name.to_string()), Arc::new(script(src)));
    }
    t
}

#[test]
fn rfc6609_3_2_include_runs_the_script() {
    let t = with_scripts(&[(
        IncludeLocation::Personal,
        "spam",
        "require \"fileinto\"; if header :contains \"subject\" \"money\" { fileinto \"Junk\"; }",
    )]);
    assert_eq!(
        t.acts("require \"include\"; include \"spam\";"),
        v(&["fileinto:Junk"])
    );
    assert!(t
        .run("require \"include\"; include :global \"spam\";")
        .is_err());
}

#[test]
fn rfc6609_3_2_global_location() {
    let t = with_scripts(&[(IncludeLocation::Global, "g", "discard;")]);
    assert_eq!(
        t.acts("require \"include\"; include :global \"g\";"),
        v(&["discard"])
    );
    assert!(t
        .run("require \"include\"; include :personal \"g\";")
        .is_err());
}

#[test]
fn rfc6609_3_2_once_includes_once() {
    let t = with_scripts(&[(
        IncludeLocation::Personal,
        "f",
        "require [\"imap4flags\"]; addflag \"x\";",
    )]);
    // Without :once the second include runs it again (harmless here).
    assert_eq!(
        t.acts("require [\"include\"]; include :once \"f\"; include :once \"f\";"),
        v(&["keep* x"])
    );
}

#[test]
fn rfc6609_3_2_optional_missing_is_a_noop_with_a_note() {
    let o = T::new().ok("require \"include\"; include :optional \"nope\";");
    assert_eq!(summary(&o), v(&["keep*"]));
    assert!(o.notes.iter().any(|n| n.contains("nope")));
}

#[test]
fn rfc6609_3_2_missing_is_a_runtime_error() {
    let e = T::new().fail("require \"include\";\n  include \"nope\";");
    assert_eq!((e.pos.line, e.pos.column), (2, 3));
}

#[test]
fn rfc6609_3_3_return_ends_the_included_script_only() {
    let t = with_scripts(&[(
        IncludeLocation::Personal,
        "r",
        "require [\"include\", \"fileinto\"]; fileinto \"A\"; return; fileinto \"B\";",
    )]);
    assert_eq!(
        t.acts("require [\"include\", \"fileinto\"]; include \"r\"; fileinto \"C\";"),
        v(&["fileinto:A", "fileinto:C"])
    );
}

#[test]
fn rfc6609_stop_in_an_included_script_ends_everything() {
    let t = with_scripts(&[(IncludeLocation::Personal, "s", "stop;")]);
    assert_eq!(
        t.acts("require [\"include\", \"fileinto\"]; include \"s\"; fileinto \"C\";"),
        v(&["keep*"])
    );
}

#[test]
fn rfc6609_3_4_global_variables_are_shared() {
    let t = with_scripts(&[(
        IncludeLocation::Personal,
        "g",
        "require [\"include\", \"variables\"]; global \"box\"; set \"box\" \"from-sub\"; set \"local\" \"hidden\";",
    )]);
    let src = "require [\"include\", \"variables\", \"fileinto\"]; global \"box\"; include \"g\"; fileinto \"${box}${local}\"; fileinto \"${global.box}2\";";
    assert_eq!(t.acts(src), v(&["fileinto:from-sub", "fileinto:from-sub2"]));
}

#[test]
fn rfc6609_3_2_recursion_is_a_runtime_error() {
    let t = with_scripts(&[
        (
            IncludeLocation::Personal,
            "a",
            "require \"include\"; include \"b\";",
        ),
        (
            IncludeLocation::Personal,
            "b",
            "require \"include\"; include \"a\";",
        ),
    ]);
    let e = t.fail("require \"include\"; include \"a\";");
    assert!(e.message.contains("loop"), "{e}");
}

#[test]
fn rfc6609_include_depth_is_bounded() {
    let mut t = with_scripts(&[
        (
            IncludeLocation::Personal,
            "a",
            "require \"include\"; include \"b\";",
        ),
        (
            IncludeLocation::Personal,
            "b",
            "require \"include\"; include \"c\";",
        ),
        (IncludeLocation::Personal, "c", "keep;"),
    ]);
    t.limits.max_include_depth = 2;
    assert!(t
        .fail("require \"include\"; include \"a\";")
        .message
        .contains("max_include_depth"));
    t.limits.max_include_depth = 3;
    assert_eq!(t.acts("require \"include\"; include \"a\";"), v(&["keep"]));
}

#[test]
fn rfc6609_include_failure_is_a_runtime_error() {
    let mut t = T::new();
    t.host.broken = v(&["bad"]);
    assert!(t
        .run("require \"include\"; include :optional \"bad\";")
        .is_err());
}

// ----- regex -----

#[test]
fn regex_match_sets_match_variables() {
    let src = "require [\"regex\", \"variables\", \"fileinto\"];
        if header :regex \"x-spam-status\" \"^(yes|no), score=([0-9]+)\" { fileinto \"S.${1}.${2}\"; }";
    assert_eq!(T::new().acts(src), v(&["fileinto:S.Yes.12"]));
}

#[test]
fn regex_built_at_run_time_from_variables() {
    let src = "require [\"regex\", \"variables\"]; set \"p\" \"sc.re\";
        if header :regex \"x-spam-status\" \"${p}\" { discard; }";
    assert_eq!(T::new().acts(src), v(&["discard"]));
}

// ----- RFC 5183 environment -----

#[test]
fn rfc5183_environment_items() {
    let t = T::new();
    assert_eq!(
        t.acts(
            "require \"environment\"; if environment :is \"domain\" \"example.com\" { discard; }"
        ),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("require \"environment\"; if environment :contains \"remote-ip\" \"\" { discard; }"),
        v(&["keep*"])
    );
}

// ----- RFC 5293 editheader -----

#[test]
fn rfc5293_addheader_is_seen_by_later_tests() {
    let t = T::new();
    assert_eq!(t.acts("require \"editheader\"; addheader \"X-Tag\" \"tagged\"; if header :is \"x-tag\" \"tagged\" { discard; }"), v(&["discard"]));
}

#[test]
fn rfc5293_6_store_snapshots_the_edited_header() {
    let src = "require [\"editheader\", \"fileinto\", \"copy\"];
        fileinto :copy \"Before\";
        addheader \"X-One\" \"1\";
        fileinto :copy \"Middle\";
        addheader :last \"X-Two\" \"2\";";
    let o = T::new().ok(src);
    assert_eq!(
        summary(&o),
        v(&["fileinto:Before", "fileinto:Middle", "keep*"])
    );
    assert_eq!(stored_header(&o, 0), None);
    let middle = stored_header(&o, 1).unwrap_or_default();
    assert!(middle.starts_with("X-One: 1"), "{middle}");
    assert!(!middle.contains("X-Two"));
    let last = stored_header(&o, 2).unwrap_or_default();
    assert!(
        last.contains("X-Two: 2") && last.contains("X-One: 1"),
        "{last}"
    );
}

#[test]
fn rfc5293_5_deleteheader_with_index_and_patterns() {
    let t = T::new().msg(b"X-A: one\r\nX-A: two\r\nX-A: three\r\nX-B: b\r\n\r\nbody\r\n");
    let src = "require [\"editheader\", \"index\"]; deleteheader :index 1 :last \"x-a\"; deleteheader :contains \"x-a\" \"ne\";
        if header :is \"x-a\" [\"one\", \"three\"] { discard; }";
    assert_eq!(t.acts(src), v(&["keep*"]));
    let o = t.ok("require \"editheader\"; deleteheader \"x-a\";");
    let h = stored_header(&o, 0).unwrap_or_default();
    assert!(!h.contains("X-A") && h.contains("X-B: b"), "{h}");
}

#[test]
fn rfc5293_7_received_and_auto_submitted_are_protected() {
    let t = T::new();
    let o = t.ok("require \"editheader\"; deleteheader \"Received\"; addheader \"Auto-Submitted\" \"no\"; if exists \"received\" { discard; }");
    assert_eq!(summary(&o), v(&["discard"]));
    assert_eq!(o.notes.len(), 2, "{:?}", o.notes);
}

#[test]
fn rfc5293_unedited_messages_store_no_header() {
    let o = T::new().ok("keep;");
    assert_eq!(stored_header(&o, 0), None);
}

// ----- RFC 8579 special-use -----

#[test]
fn rfc8579_fileinto_specialuse_resolves_through_the_host() {
    let mut t = T::new();
    t.host.special = vec![("\\Junk".into(), "Spam".into())];
    let o = t
        .ok("require [\"fileinto\", \"special-use\"]; fileinto :specialuse \"\\\\Junk\" \"Junk\";");
    match &o.actions[..] {
        [Action::FileInto(s)] => {
            assert_eq!(s.mailbox.as_deref(), Some("Spam"));
            assert_eq!(s.special_use.as_deref(), Some("\\Junk"));
        }
        other => panic!("{other:?}"),
    }
    let o = T::new()
        .ok("require [\"fileinto\", \"special-use\"]; fileinto :specialuse \"\\\\Junk\" \"Junk\";");
    assert_eq!(summary(&o), v(&["fileinto:Junk"]));
}

#[test]
fn rfc8579_specialuse_exists() {
    let mut t = T::new();
    t.host.special = vec![("\\Junk".into(), "Spam".into())];
    assert_eq!(
        t.acts("require \"special-use\"; if specialuse_exists \"\\\\Junk\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("require \"special-use\"; if specialuse_exists \"Spam\" \"\\\\Junk\" { discard; }"),
        v(&["discard"])
    );
    assert_eq!(
        t.acts("require \"special-use\"; if specialuse_exists \"\\\\Trash\" { discard; }"),
        v(&["keep*"])
    );
}

// ----- limits -----

#[test]
fn limits_max_actions_is_a_runtime_error() {
    let mut t = T::new();
    t.limits.max_actions = 2;
    let e = t.fail("require \"fileinto\"; fileinto \"a\"; fileinto \"b\";\nfileinto \"c\";");
    assert_eq!(e.pos.line, 2);
    // Duplicates do not count twice.
    assert_eq!(
        t.acts("require \"fileinto\"; fileinto \"a\"; fileinto \"b\"; fileinto \"a\";")
            .len(),
        2
    );
}

#[test]
fn limits_max_steps_is_a_runtime_error() {
    let mut t = T::new();
    t.limits.max_steps = 5;
    assert!(t
        .run("if true { if true { if true { if true { keep; } } } }")
        .is_err());
    t.limits.max_steps = 100;
    assert!(t.run("if true { if true { keep; } }").is_ok());
}

// ----- several scripts -----

#[test]
fn multiscript_next_runs_only_after_a_keep() {
    let t = T::new();
    let before = script("require \"fileinto\"; if header :contains \"x-spam-status\" \"yes\" { fileinto \"Junk\"; }");
    let user = script("require \"fileinto\"; fileinto \"User\";");
    let seq = t.with(|i| run_sequence(&[&before, &user], i, &t.limits));
    assert_eq!(summary(&seq.outcome), v(&["fileinto:Junk"]));
    let before = script("require \"imap4flags\"; addflag \"b\";");
    let seq = t.with(|i| run_sequence(&[&before, &user], i, &t.limits));
    // The internal flags variable carries over (one result, as in Pigeonhole).
    assert_eq!(summary(&seq.outcome), v(&["fileinto:User b"]));
}

#[test]
fn multiscript_stop_ends_only_the_current_script() {
    let t = T::new();
    let before = script("stop;");
    let user = script("discard;");
    let seq = t.with(|i| run_sequence(&[&before, &user], i, &t.limits));
    assert_eq!(summary(&seq.outcome), v(&["discard"]));
}

#[test]
fn multiscript_after_script_sees_header_edits_and_keeps() {
    let t = T::new();
    let before = script("require \"editheader\"; addheader \"X-Before\" \"1\";");
    let user = script("if false { keep; }");
    let after = script("require \"fileinto\"; if exists \"x-before\" { fileinto \"Seen\"; }");
    let seq = t.with(|i| run_sequence(&[&before, &user, &after], i, &t.limits));
    assert_eq!(summary(&seq.outcome), v(&["fileinto:Seen"]));
}

#[test]
fn multiscript_error_names_the_script_and_falls_back_to_keep() {
    let t = T::new();
    let before = script("require [\"fileinto\", \"copy\"]; fileinto :copy \"A\";");
    let user = script("require [\"include\", \"fileinto\"]; fileinto \"B\"; include \"missing\";");
    let seq = t.with(|i| run_sequence(&[&before, &user], i, &t.limits));
    assert_eq!(seq.error.as_ref().map(|e| e.script), Some(1));
    // The before script completed (Pigeonhole has stored its copy); the user script's
    // fileinto is dropped and the message kept.
    assert_eq!(summary(&seq.outcome), v(&["fileinto:A", "keep*"]));
    let before = script("keep;");
    let seq = t.with(|i| run_sequence(&[&before, &user], i, &t.limits));
    assert_eq!(summary(&seq.outcome), v(&["keep"]));
    let seq = t.with(|i| run_sequence(&[&user], i, &t.limits));
    assert_eq!(summary(&seq.outcome), v(&["keep*"]));
}

#[test]
fn multiscript_reject_conflicts_across_scripts() {
    let t = T::new();
    let before = script("keep;");
    let user = script("require \"reject\"; reject \"no\";");
    let seq = t.with(|i| run_sequence(&[&before, &user], i, &t.limits));
    assert_eq!(seq.error.as_ref().map(|e| e.script), Some(1));
}

#[test]
fn multiscript_implicit_keep_gets_flags_from_a_before_script() {
    let t = T::new();
    let before = script("require \"imap4flags\"; addflag \"\\\\Seen\";");
    let user = script("if false { keep; }");
    let seq = t.with(|i| run_sequence(&[&before, &user], i, &t.limits));
    assert_eq!(summary(&seq.outcome), v(&["keep* \\Seen"]));
}

#[test]
fn multiscript_empty_sequence_keeps() {
    let t = T::new();
    let seq = t.with(|i| run_sequence(&[], i, &t.limits));
    assert_eq!(summary(&seq.outcome), v(&["keep*"]));
}

#[test]
fn fileinto_a_missing_folder_is_noted() {
    let mut t = T::new();
    t.host.folders = v(&["Here"]);
    let o = t.ok("require \"fileinto\"; fileinto \"Here\"; fileinto \"Gone\";");
    assert_eq!(summary(&o), v(&["fileinto:Here", "fileinto:Gone"]));
    assert_eq!(o.notes.len(), 1, "{:?}", o.notes);
    assert!(o.notes[0].contains("Gone"));
}

#[test]
fn rfc5293_4_addheader_encodes_non_ascii_and_drops_line_breaks() {
    let src = "require \"editheader\"; addheader \"X-Name\" \"Café\";\naddheader \"X-Two\" text:\na\nb\n.\n;";
    let o = T::new().ok(src);
    let h = stored_header(&o, 0).unwrap_or_default();
    assert!(h.contains("X-Name: =?UTF-8?B?Q2Fmw6k=?="), "{h}");
    assert!(h.contains("X-Two: a"), "{h}");
    assert!(!h.contains("a\r\nb") && !h.contains("a\nb"), "{h}");
}

#[test]
fn rfc5293_4_addheader_invalid_name_is_a_runtime_error() {
    assert!(T::new()
        .run(
            "require [\"editheader\", \"variables\"]; set \"n\" \"a b\"; addheader \"${n}\" \"x\";"
        )
        .is_err());
}

#[test]
fn rfc5229_4_quoteregex_modifier() {
    let src = "require [\"variables\", \"regex\", \"fileinto\"]; set :quoteregex \"b\" \"a.b*\"; fileinto \"${b}\";";
    assert_eq!(T::new().acts(src), v(&["fileinto:a\\.b\\*"]));
}

#[test]
fn rfc5229_3_1_namespaces_not_supported_stay_literal() {
    let src = "require [\"variables\", \"fileinto\"]; fileinto \"${foo.bar}${}${1x}\";";
    assert_eq!(T::new().acts(src), v(&["fileinto:${foo.bar}${}${1x}"]));
}

#[test]
fn strings_are_not_expanded_without_variables() {
    assert_eq!(
        T::new().acts("require \"fileinto\"; fileinto \"${x}\";"),
        v(&["fileinto:${x}"])
    );
}

#[test]
fn limits_nesting_is_bounded_at_run_time() {
    let mut t = T::new();
    t.limits.max_nesting = 2;
    t.limits.max_include_depth = 0;
    // The validator may refuse this already; if it compiles, the run refuses it.
    let src = "if true { if true { if true { if true { if true { keep; } } } } }";
    if let Ok(s) = compile(src.as_bytes(), &Limits::default()) {
        assert!(t.with(|i| run(&s, i, &t.limits)).is_err());
    }
}

#[test]
fn rfc5232_hasflag_with_a_variable_list() {
    let src = "require [\"imap4flags\", \"variables\"]; set \"a\" \"x y\"; set \"b\" \"z\";
        if hasflag :is [\"a\", \"b\"] \"z\" { discard; }";
    assert_eq!(T::new().acts(src), v(&["discard"]));
}

/// After RFC 6609 §5: a script built of personal and global pieces.
#[test]
fn rfc6609_5_example_pieces() {
    let t = with_scripts(&[
        (IncludeLocation::Personal, "always_allow", "if address :is \"from\" \"boss@example.com\" { keep; }"),
        (
            IncludeLocation::Global,
            "spam_tests",
            "require \"reject\"; if header :contains \"Subject\" \"XXXX\" { reject \"Subject XXXX is unacceptable.\"; }",
        ),
        (IncludeLocation::Personal, "spam_tests", "if address :is \"from\" \"alice@example.org\" { discard; }"),
        (
            IncludeLocation::Personal,
            "mailing_lists",
            "require \"fileinto\"; if exists \"list-id\" { fileinto \"lists\"; }",
        ),
    ]);
    let src =
        "require \"include\"; include :personal \"always_allow\"; include :global \"spam_tests\";
        include :personal \"spam_tests\"; include :personal \"mailing_lists\";";
    // The sender is discarded by the personal spam test, but the list rule files it.
    assert_eq!(t.acts(src), v(&["fileinto:lists"]));
    let xxxx = T {
        host: t.host,
        ..T::new()
    }
    .msg(b"From: x@example.net\r\nSubject: XXXX\r\n\r\nhi\r\n");
    assert_eq!(xxxx.acts(src), v(&["reject:Subject XXXX is unacceptable."]));
}

/// After RFC 6609 §5: a global variable passes a test value in and a result out.
#[test]
fn rfc6609_5_example_global_variables() {
    let t = with_scripts(&[(
        IncludeLocation::Personal,
        "subject_tests",
        "require [\"include\", \"variables\"]; global [\"test\", \"test_mailbox\"];
         if header :contains \"subject\" \"${test}\" { set \"test_mailbox\" \"spam-${test}\"; }",
    )]);
    let src =
        "require [\"include\", \"variables\", \"fileinto\"]; global [\"test\", \"test_mailbox\"];
        set \"test\" \"$$\"; include \"subject_tests\";
        set \"test\" \"money\"; include \"subject_tests\";
        if string :is \"${test_mailbox}\" \"\" { stop; }
        fileinto \"${test_mailbox}\";";
    assert_eq!(t.acts(src), v(&["fileinto:spam-money"]));
}

#[test]
fn rfc6609_match_variables_are_each_scripts_own() {
    let t = with_scripts(&[(
        IncludeLocation::Personal,
        "m",
        "require \"variables\"; if header :matches \"subject\" \"*\" { }",
    )]);
    let src = "require [\"include\", \"variables\", \"fileinto\"];
        if header :matches \"x-spam-score\" \"*\" { include \"m\"; fileinto \"s${1}\"; }";
    assert_eq!(t.acts(src), v(&["fileinto:s12"]));
}

/// After RFC 5293 §7: tag the message and drop a field another filter set.
#[test]
fn rfc5293_example_tag_and_remove() {
    let src = "require [\"editheader\", \"fileinto\"];
        addheader \"X-Sieve-Filtered\" \"<kim@job.example.com>\";
        deleteheader :contains \"X-Spam-Status\" \"yes\";
        if not exists \"x-spam-status\" { fileinto \"checked\"; }";
    let o = T::new().ok(src);
    assert_eq!(summary(&o), v(&["fileinto:checked"]));
    let h = stored_header(&o, 0).unwrap_or_default();
    assert!(
        h.starts_with("X-Sieve-Filtered: <kim@job.example.com>"),
        "{h}"
    );
    assert!(!h.contains("X-Spam-Status"), "{h}");
}

#[test]
fn rfc5228_2_10_3_keep_and_copy_into_the_same_folder() {
    let src = "require [\"fileinto\", \"copy\"]; fileinto :copy \"A\"; fileinto \"A\"; keep;";
    assert_eq!(T::new().acts(src), v(&["fileinto:A", "keep"]));
}

#[test]
fn rfc5228_2_10_2_discard_then_keep_keeps() {
    assert_eq!(T::new().acts("discard; keep;"), v(&["keep"]));
}

#[test]
fn rfc5229_3_2_match_variable_numbers() {
    let src = "require [\"variables\", \"fileinto\"];
        if header :matches \"x-spam-score\" \"?*\" { fileinto \"${00}-${1}-${2}-${3}-${99999999999999999999999}\"; }";
    assert_eq!(T::new().acts(src), v(&["fileinto:12-1-2--"]));
}

#[test]
fn rfc5231_count_on_envelope() {
    let src = "require [\"envelope\", \"relational\", \"comparator-i;ascii-numeric\"];
        if envelope :count \"eq\" :comparator \"i;ascii-numeric\" [\"from\", \"to\", \"auth\"] \"2\" { discard; }";
    assert_eq!(T::new().acts(src), v(&["discard"]));
}

#[test]
fn rfc5228_5_4_envelope_parts_of_the_null_sender_are_empty() {
    let mut t = T::new();
    t.envelope.from = String::new();
    assert_eq!(
        t.acts("require \"envelope\"; if envelope :localpart :is \"from\" \"\" { discard; }"),
        v(&["discard"])
    );
}

#[test]
fn rfc5260_4_1_invalid_zone_makes_the_test_false() {
    let src = "require [\"date\", \"variables\"]; set \"z\" \"bogus\"; if currentdate :zone \"${z}\" :matches \"year\" \"*\" { discard; }";
    let o = T::new().ok(src);
    assert_eq!(summary(&o), v(&["keep*"]));
    assert_eq!(o.notes.len(), 1, "{:?}", o.notes);
}

#[test]
fn rfc5173_body_matches_sets_match_variables() {
    let src = "require [\"body\", \"variables\", \"fileinto\"];
        if body :matches \"*Hello *,*\" { fileinto \"to.${2}\"; }";
    assert_eq!(T::new().acts(src), v(&["fileinto:to.Bob"]));
}

#[test]
fn rfc5173_body_part_over_the_limit_is_compared_with_contains_only() {
    let mut t = T::new();
    t.limits.max_body_part = 8;
    let o = t.ok("require \"body\"; if body :is \"x\" { discard; }");
    assert_eq!(summary(&o), v(&["keep*"]));
    assert!(
        o.notes.iter().any(|n| n.contains("max_body_part")),
        "{:?}",
        o.notes
    );
}

#[test]
fn rfc5228_2_4_2_4_encoded_characters_decode_once() {
    // "${hex:24 7b}" is "${" once decoded; what follows must stay literal.
    let src = "require [\"encoded-character\", \"fileinto\"]; fileinto \"${hex:24 7b}hex:41}\";";
    assert_eq!(T::new().acts(src), v(&["fileinto:${hex:41}"]));
}

// ----- hardening: random scripts -----

/// A small seeded generator (the same sequence on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

const TESTS: &[&str] = &[
    "true",
    "false",
    "header :matches \"subject\" \"*${x}*\"",
    "address :domain \"from\" \"example.org\"",
    "envelope :detail \"to\" \"lists\"",
    "exists \"x-a\"",
    "size :over 10",
    "body :contains \"secret\"",
    "string :regex \"${x}\" \"a(\"",
    "string :matches \"${x}\" \"*a?\"",
    "hasflag :contains \"f\"",
    "currentdate :value \"ge\" \"year\" \"2000\"",
    "date :originalzone :index 1 \"date\" \"hour\" \"10\"",
    "mailboxexists \"A\"",
    "environment \"domain\" \"x\"",
    "header :count \"gt\" \"received\" \"0\"",
];

const COMMANDS: &[&str] = &[
    "keep;",
    "discard;",
    "stop;",
    "fileinto \"A\";",
    "fileinto :copy \"${x}\";",
    "fileinto :flags \"\\\\Seen ${x}\" \"B\";",
    "fileinto :create \"C${x}\";",
    "reject \"r\";",
    "set \"x\" \"${x}${x}a\";",
    "set :upper \"x\" \"${1}b\";",
    "addflag \"f${x}\";",
    "removeflag \"fa\";",
    "addheader \"X-A\" \"${x}\";",
    "deleteheader \"x-a\";",
    "include :optional \"a\";",
    "include :once \"b\";",
    "redirect \"a@example.net\";",
];

fn random_block(r: &mut Lcg, depth: usize, out: &mut String) {
    for _ in 0..r.next(4) + 1 {
        if depth < 3 && r.next(3) == 0 {
            out.push_str("if ");
            random_test(r, depth, out);
            out.push_str(" { ");
            random_block(r, depth + 1, out);
            out.push_str(" } ");
            if r.next(2) == 0 {
                out.push_str("elsif ");
                random_test(r, depth, out);
                out.push_str(" { ");
                random_block(r, depth + 1, out);
                out.push_str(" } ");
            }
            if r.next(2) == 0 {
                out.push_str("else { ");
                random_block(r, depth + 1, out);
                out.push_str(" } ");
            }
        } else {
            out.push_str(COMMANDS[r.next(COMMANDS.len())]);
            out.push(' ');
        }
    }
}

fn random_test(r: &mut Lcg, depth: usize, out: &mut String) {
    match r.next(6) {
        0 if depth < 3 => {
            out.push_str("not ");
            random_test(r, depth + 1, out);
        }
        1 if depth < 3 => {
            out.push_str(if r.next(2) == 0 { "allof (" } else { "anyof (" });
            random_test(r, depth + 1, out);
            out.push_str(", ");
            random_test(r, depth + 1, out);
            out.push(')');
        }
        _ => out.push_str(TESTS[r.next(TESTS.len())]),
    }
}

const ALL: &str = "require [\"fileinto\", \"reject\", \"envelope\", \"subaddress\", \"copy\", \"imap4flags\",
    \"body\", \"variables\", \"relational\", \"comparator-i;ascii-numeric\", \"mailbox\", \"date\", \"index\",
    \"include\", \"regex\", \"environment\", \"editheader\"];\n";

#[test]
fn random_scripts_never_panic_and_keep_the_limits() {
    let mut t = with_scripts(&[
        (
            IncludeLocation::Personal,
            "a",
            "require [\"include\", \"fileinto\"]; fileinto \"Inc\"; include \"a\";",
        ),
        (
            IncludeLocation::Personal,
            "b",
            "require [\"imap4flags\"]; addflag \"inc\";",
        ),
    ]);
    t.limits.max_actions = 4;
    t.limits.max_steps = 200;
    t.limits.max_variable_size = 256;
    let mut r = Lcg(0x5eed);
    let mut compiled = 0;
    for _ in 0..1500 {
        let mut src = ALL.to_string();
        random_block(&mut r, 0, &mut src);
        let Ok(s) = compile(src.as_bytes(), &Limits::default()) else {
            continue;
        };
        compiled += 1;
        match t.with(|i| run(&s, i, &t.limits)) {
            Ok(o) => {
                // max_actions, plus the implicit keep.
                assert!(o.actions.len() <= t.limits.max_actions + 1, "{src}\n{o:?}");
                let rejects = o
                    .actions
                    .iter()
                    .filter(|a| matches!(a, Action::Reject { .. }))
                    .count();
                assert!(rejects <= 1, "{src}");
                let stores = o
                    .actions
                    .iter()
                    .filter(|a| matches!(a, Action::Keep { .. } | Action::FileInto(_)))
                    .count();
                assert!(rejects == 0 || stores == 0, "{src}\n{o:?}");
                assert!(!o.actions.is_empty(), "{src}");
                for a in &o.actions {
                    if let Action::Keep { store, .. } | Action::FileInto(store) = a {
                        let mut seen: Vec<String> = Vec::new();
                        for f in &store.flags {
                            assert!(!seen.contains(&f.to_ascii_lowercase()), "{src}\n{o:?}");
                            seen.push(f.to_ascii_lowercase());
                        }
                    }
                }
            }
            Err(e) => assert!(e.pos.line >= 1 && !e.message.contains('\n'), "{e}"),
        }
    }
    assert!(compiled > 1000, "only {compiled} random scripts compiled");
}

// ----- redirect (RFC 5228 §4.2, RFC 3894) -----

#[test]
fn rfc5228_4_2_redirect_cancels_the_implicit_keep() {
    let t = T::new();
    assert_eq!(
        t.acts(r#"redirect "carol@example.net";"#),
        v(&["redirect:carol@example.net"])
    );
}

#[test]
fn rfc3894_redirect_copy_keeps_the_implicit_keep() {
    let t = T::new();
    assert_eq!(
        t.acts(r#"require "copy"; redirect :copy "carol@example.net";"#),
        v(&["redirect:carol@example.net copy", "keep*"])
    );
}

#[test]
fn rfc5228_2_10_3_two_redirects_to_one_address_send_once() {
    let t = T::new();
    assert_eq!(
        t.acts(
            r#"require "copy"; redirect :copy "carol@example.net"; redirect "carol@Example.NET";"#
        ),
        v(&["redirect:carol@example.net"]),
        "one send; the plain redirect cancelled the keep"
    );
    // RFC 5321 §2.4: a local part's case may matter, so these are two destinations.
    assert_eq!(
        t.acts(r#"redirect "carol@example.net"; redirect "Carol@example.net";"#),
        v(&["redirect:carol@example.net", "redirect:Carol@example.net"])
    );
}

#[test]
fn redirects_past_sieve_max_redirects_are_a_runtime_error() {
    let mut t = T::new();
    t.limits.max_redirects = 2;
    let e = t.fail(r#"redirect "a@x.example"; redirect "b@x.example"; redirect "c@x.example";"#);
    assert!(e.message.contains("max_redirects"), "{e}");
    assert_eq!(e.pos.line, 1);
}

#[test]
fn rfc5228_4_2_a_redirect_to_an_invalid_address_is_a_runtime_error() {
    let t = T::new();
    for bad in [
        "not an address",
        "nobody",
        "a@",
        "@b.example",
        "a@b..example",
        "-f@x",
    ] {
        let src = format!(r#"require "variables"; set "a" "{bad}"; redirect "${{a}}";"#);
        if bad == "-f@x" {
            // A local part may begin with '-': the submission path passes it after `--`.
            assert_eq!(t.acts(&src), v(&["redirect:-f@x"]));
            continue;
        }
        let e = t.fail(&src);
        assert!(e.message.contains("not a valid address"), "{bad}: {e}");
    }
    assert_eq!(
        t.acts(r#"redirect "<carol@example.net>";"#),
        v(&["redirect:carol@example.net"])
    );
}

#[test]
fn rfc5429_reject_and_redirect_conflict_in_either_order() {
    let t = T::new();
    assert!(t
        .fail(r#"require "reject"; redirect "a@x.example"; reject "no";"#)
        .message
        .contains("reject"));
    assert!(t
        .fail(r#"require "reject"; reject "no"; redirect "a@x.example";"#)
        .message
        .contains("reject"));
}

// ----- vacation (RFC 5230, RFC 6131) -----

#[test]
fn rfc5230_4_1_the_default_period_is_seven_days_and_keep_is_untouched() {
    let t = T::new();
    let o = t.ok(r#"require "vacation"; vacation "away";"#);
    assert_eq!(summary(&o), v(&["vacation:604800s", "keep*"]));
    match &o.actions[0] {
        Action::Vacation(vac) => {
            assert_eq!(vac.reason, "away");
            assert_eq!(vac.handle, "away<default-subject><default-from><NO-MIME>");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rfc5230_4_1_days_and_rfc6131_seconds_are_bounded_by_the_site() {
    let t = T::new();
    assert_eq!(
        t.acts(r#"require "vacation"; vacation :days 3 "x";"#)[0],
        "vacation:259200s"
    );
    let o = t.ok(r#"require "vacation"; vacation :days 0 "x";"#);
    assert_eq!(
        summary(&o)[0],
        "vacation:86400s",
        ":days 0 is raised to the minimum"
    );
    assert!(
        o.notes.iter().any(|n| n.contains("bounds")),
        "{:?}",
        o.notes
    );
    assert_eq!(
        t.acts(r#"require ["vacation", "vacation-seconds"]; vacation :seconds 7200 "x";"#)[0],
        "vacation:86400s"
    );
    let mut t = T::new();
    t.limits.vacation_min_period = 60;
    t.limits.vacation_max_period = 3600;
    assert_eq!(
        t.acts(r#"require ["vacation", "vacation-seconds"]; vacation :seconds 600 "x";"#)[0],
        "vacation:600s"
    );
    assert_eq!(
        t.acts(r#"require "vacation"; vacation :days 100 "x";"#)[0],
        "vacation:3600s"
    );
}

#[test]
fn rfc6131_seconds_needs_its_extension() {
    let e = compile(
        br#"require "vacation"; vacation :seconds 60 "x";"#,
        &Limits::default(),
    );
    assert!(e.is_err());
}

#[test]
fn rfc5230_4_2_the_handle_and_the_other_arguments_are_kept() {
    let t = T::new();
    let o = t.ok(
        r#"require ["vacation", "variables"]; set "who" "Alice";
vacation :subject "Out: ${who}" :from "alice@example.org" :addresses ["a@x.example", "b@x.example"] :mime :handle "ooo" "Content-Type: text/plain

away";"#,
    );
    let Action::Vacation(vac) = &o.actions[0] else {
        panic!("{o:?}")
    };
    assert_eq!(vac.subject.as_deref(), Some("Out: Alice"));
    assert_eq!(vac.from.as_deref(), Some("alice@example.org"));
    assert_eq!(vac.addresses, v(&["a@x.example", "b@x.example"]));
    assert!(vac.mime);
    assert_eq!(vac.handle, "ooo");
}

#[test]
fn rfc5230_4_7_a_second_vacation_is_a_runtime_error() {
    let t = T::new();
    let e = t.fail(r#"require "vacation"; vacation "a"; vacation "b";"#);
    assert!(e.message.contains("vacation"), "{e}");
}

// ----- duplicate (RFC 7352) -----

#[test]
fn rfc7352_3_the_message_id_is_tracked_and_a_new_one_is_not_a_duplicate() {
    let t = T::new().msg(b"Message-ID: <1@example.com>\r\n\r\nx\r\n");
    let o = t.ok(r#"require "duplicate"; if duplicate { discard; }"#);
    assert_eq!(summary(&o), v(&["keep*"]));
    assert_eq!(o.tracked.len(), 1);
    assert_eq!(o.tracked[0].id, "<1@example.com>");
    assert_eq!(o.tracked[0].handle, "");
    assert_eq!(
        o.tracked[0].seconds,
        Limits::default().duplicate_default_period
    );
    assert!(!o.tracked[0].last);
}

#[test]
fn rfc7352_3_a_message_id_seen_before_is_a_duplicate_and_noted() {
    let mut t = T::new().msg(b"Message-ID: <1@example.com>\r\n\r\nx\r\n");
    t.host.seen.push((String::new(), "<1@example.com>".into()));
    let o = t.ok(r#"require "duplicate"; if duplicate { discard; }"#);
    assert_eq!(summary(&o), v(&["discard"]));
    assert!(
        o.notes.iter().any(|n| n.contains("<1@example.com>")),
        "the discard can be traced to the Message-ID: {:?}",
        o.notes
    );
}

#[test]
fn rfc7352_3_2_handles_header_and_uniqueid_select_what_is_compared() {
    let mut t = T::new().msg(b"Message-ID: <1@example.com>\r\nX-Ticket: 42\r\n\r\nx\r\n");
    t.host.seen.push(("tickets".into(), "42".into()));
    t.host.seen.push(("".into(), "custom".into()));
    assert_eq!(
        t.acts(
            r#"require "duplicate"; if duplicate :handle "tickets" :header "x-ticket" { discard; }"#
        ),
        v(&["discard"])
    );
    assert_eq!(
        t.acts(r#"require "duplicate"; if duplicate :header "x-ticket" { discard; }"#),
        v(&["keep*"]),
        "without the handle it is another list"
    );
    assert_eq!(
        t.acts(r#"require "duplicate"; if duplicate :uniqueid "custom" { discard; }"#),
        v(&["discard"])
    );
    assert!(compile(
        br#"require "duplicate"; if duplicate :header "a" :uniqueid "b" { stop; }"#,
        &Limits::default()
    )
    .is_err());
}

#[test]
fn rfc7352_3_a_missing_header_is_no_duplicate_and_nothing_is_tracked() {
    let t = T::new().msg(b"Subject: no id\r\n\r\nx\r\n");
    let o = t.ok(r#"require "duplicate"; if duplicate { discard; }"#);
    assert_eq!(summary(&o), v(&["keep*"]));
    assert!(o.tracked.is_empty());
}

#[test]
fn rfc7352_3_3_seconds_are_capped_and_last_is_recorded() {
    let t = T::new().msg(b"Message-ID: <1@example.com>\r\n\r\nx\r\n");
    let o = t.ok(r#"require "duplicate"; if duplicate :seconds 99999999 :last { stop; }"#);
    assert_eq!(o.tracked[0].seconds, Limits::default().duplicate_max_period);
    assert!(o.tracked[0].last);
}

#[test]
fn rfc7352_3_nothing_is_tracked_when_the_run_fails() {
    let t = T::new().msg(b"Message-ID: <1@example.com>\r\n\r\nx\r\n");
    let a = script(r#"require "duplicate"; if duplicate { stop; }"#);
    let b = script(r#"require "include"; include "missing";"#);
    let seq = t.with(|input| run_sequence(&[&a, &b], input, &t.limits));
    assert!(seq.error.is_some());
    assert!(seq.outcome.tracked.is_empty());
}
