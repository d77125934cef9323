//! Unit tests of the LMTP session: a named test per RFC rule, each conversation run whole,
//! byte by byte and split at every offset (see `run_cfg`).

#![allow(clippy::unwrap_used)]

use super::*;
use crate::proto::Enhanced;

const GREETING: &str = "220 localhost LMTP ready\r\n";
const LHLO_REPLY: &str = "250-localhost\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n\
                          250-8BITMIME\r\n250-CHUNKING\r\n250-SIZE 0\r\n250-SMTPUTF8\r\n250 DSN\r\n";

type Verdict<'a> = &'a dyn Fn(&Mailbox) -> Result<String, Reply>;
type Outcome<'a> = &'a dyn Fn(&str) -> Reply;

/// What the shared driver ([`super::testing::drive`]) observes.
type Transcript = super::testing::Transcript<String>;

/// Default directory: `bad*` is unknown, `tmp*` fails temporarily, everything else exists.
fn verdict(m: &Mailbox) -> Result<String, Reply> {
    if m.local.starts_with("bad") {
        Err(Reply::new(
            550,
            Enhanced(5, 1, 1),
            format!("<{m}> User unknown"),
        ))
    } else if m.local.starts_with("tmp") {
        Err(Reply::new(
            451,
            Enhanced(4, 3, 0),
            format!("<{m}> Try again"),
        ))
    } else {
        Ok(m.to_string())
    }
}

/// Default store: `full*` is over quota, everything else is saved.
fn outcome(r: &str) -> Reply {
    if r.starts_with("full") {
        Reply::new(452, Enhanced(4, 2, 2), format!("<{r}> Mailbox full"))
    } else {
        Reply::new(250, Enhanced(2, 0, 0), format!("<{r}> Saved"))
    }
}

/// Drives a default-answering session through the shared driver (no end of input).
fn drive(cfg: &SessionConfig, chunks: &[&[u8]], v: Verdict<'_>, o: Outcome<'_>) -> Transcript {
    super::testing::drive(cfg, chunks, false, &mut |m| v(m), &mut |r: &String| o(r))
}

/// Feeds `input` whole, byte by byte and split at every offset; asserts all agree and that
/// every reply conforms to RFC 2034; returns the whole-input transcript.
fn run_cfg(cfg: &SessionConfig, input: &[u8], v: Verdict<'_>, o: Outcome<'_>) -> Transcript {
    let whole = drive(cfg, &[input], v, o);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(drive(cfg, &bytes, v, o), whole, "byte by byte");
    for i in 1..input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(drive(cfg, &[a, b], v, o), whole, "split at {i}");
    }
    check_replies(&whole.out, &cfg.hostname);
    whole
}

/// The conversation helper: drives a default session with `input` and returns the output.
fn run(input: &str, v: Verdict<'_>, o: Outcome<'_>) -> String {
    run_cfg(&SessionConfig::default(), input.as_bytes(), v, o).out
}

/// `run` with the default directory and store.
fn talk(input: &str) -> String {
    run(input, &verdict, &outcome)
}

fn lhlo(rest: &str) -> String {
    format!("{GREETING}{LHLO_REPLY}{rest}")
}

/// RFC 2034 / standards §10.9: every 2xx/4xx/5xx reply except the greeting and LHLO replies
/// carries `d.d.d ` of the same class on every line; 354 carries none.
fn check_replies(out: &str, host: &str) {
    assert!(out.is_empty() || out.ends_with("\r\n"), "{out:?}");
    let mut replies: Vec<Vec<&str>> = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    for line in out.split_terminator("\r\n") {
        assert!(line.len() + 2 <= 512, "{line}");
        let b = line.as_bytes();
        assert!(
            b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit),
            "{line:?}"
        );
        assert!(b[3] == b' ' || b[3] == b'-', "{line:?}");
        if let Some(first) = cur.first() {
            assert_eq!(&first[..3], &line[..3], "code changes inside a reply");
        }
        cur.push(line);
        if b[3] == b' ' {
            replies.push(std::mem::take(&mut cur));
        }
    }
    assert!(cur.is_empty(), "unterminated multi-line reply");
    for (i, r) in replies.iter().enumerate() {
        let code = &r[0][..3];
        if i == 0 {
            assert!(code == "220" && !has_enhanced(r[0]), "{r:?}");
            continue;
        }
        if code == "354" || (code == "250" && &r[0][4..] == host) {
            assert!(r.iter().all(|l| !has_enhanced(l)), "{r:?}");
            continue;
        }
        let class = &code[..1];
        assert!(["2", "4", "5"].contains(&class), "{r:?}");
        let e0 = enhanced_of(r[0]).unwrap_or_else(|| panic!("no enhanced code: {r:?}"));
        assert!(e0.starts_with(class), "{r:?}");
        for l in r {
            assert_eq!(enhanced_of(l), Some(e0), "{r:?}");
        }
    }
}

fn enhanced_of(line: &str) -> Option<&str> {
    let text = line.get(4..)?;
    let (code, _) = text.split_once(' ')?;
    let parts: Vec<&str> = code.split('.').collect();
    let ok = parts.len() == 3
        && ["2", "4", "5"].contains(&parts[0])
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some(code)
}

fn has_enhanced(line: &str) -> bool {
    enhanced_of(line).is_some()
}

fn reject_cfg() -> SessionConfig {
    SessionConfig {
        bare_newline: BareNewline::Reject,
        ..SessionConfig::default()
    }
}

// ---- 10.1 session basics -------------------------------------------------------------

#[test]
fn greeting_is_220_without_enhanced_code() {
    assert_eq!(talk(""), GREETING);
}

#[test]
fn helo_is_500() {
    assert_eq!(
        talk("HELO x\r\nLHLO x\r\n"),
        format!("{GREETING}500 5.5.1 Error: this is LMTP, use LHLO\r\n{LHLO_REPLY}")
    );
}

#[test]
fn ehlo_is_500_and_session_stays_usable() {
    assert_eq!(
        talk("EHLO x\r\nLHLO x\r\nMAIL FROM:<a@b>\r\n"),
        format!(
            "{GREETING}500 5.5.1 Error: this is LMTP, use LHLO\r\n{LHLO_REPLY}250 2.1.0 Ok\r\n"
        )
    );
}

#[test]
fn lhlo_reply_lists_extensions_without_enhanced_codes() {
    let cfg = SessionConfig {
        hostname: "mx.example".into(),
        max_message_size: 10_240_000,
        ..SessionConfig::default()
    };
    let t = run_cfg(&cfg, b"LHLO client.example\r\n", &verdict, &outcome);
    assert_eq!(
        t.out,
        "220 mx.example LMTP ready\r\n250-mx.example\r\n250-PIPELINING\r\n\
         250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-CHUNKING\r\n250-SIZE 10240000\r\n\
         250-SMTPUTF8\r\n250 DSN\r\n"
    );
    assert!(
        !t.out.contains("BINARYMIME") && !t.out.contains("STARTTLS"),
        "not offered (BINARYMIME never; STARTTLS only with a certificate on TCP)"
    );
}

#[test]
fn lhlo_without_argument_is_501() {
    assert_eq!(
        talk("LHLO\r\nMAIL FROM:<a@b>\r\n"),
        format!(
            "{GREETING}501 5.5.4 Syntax: LHLO hostname\r\n503 5.5.1 Error: send LHLO first\r\n"
        )
    );
}

#[test]
fn second_lhlo_resets_transaction() {
    assert_eq!(
        talk("LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nLHLO y\r\nDATA\r\n"),
        lhlo(&format!(
            "250 2.1.0 Ok\r\n250 2.1.5 <c@d> OK\r\n{LHLO_REPLY}503 5.5.1 Error: send LHLO first\r\n"
        ))
        .replace("send LHLO first", "need MAIL command")
    );
}

#[test]
fn mail_rcpt_data_before_lhlo_are_503() {
    assert_eq!(
        talk("MAIL FROM:<a@b>\r\nRCPT TO:<a@b>\r\nDATA\r\n"),
        format!(
            "{GREETING}{}",
            "503 5.5.1 Error: send LHLO first\r\n".repeat(3)
        )
    );
}

#[test]
fn noop_rset_vrfy_help_work_before_lhlo() {
    assert_eq!(
        talk("NOOP\r\nRSET\r\nVRFY joe\r\nHELP\r\n"),
        format!(
            "{GREETING}250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n\
             252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n\
             214 2.0.0 Commands: LHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT\r\n"
        )
    );
}

#[test]
fn commands_are_case_insensitive() {
    let t = run_cfg(
        &SessionConfig::default(),
        b"LhLo x\r\nmail from:<a@b>\r\nrcpt to:<c@d>\r\ndata\r\n.\r\nquit\r\n",
        &verdict,
        &outcome,
    );
    assert_eq!(
        t.out,
        lhlo(
            "250 2.1.0 Ok\r\n250 2.1.5 <c@d> OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n\
              250 2.0.0 <c@d> Saved\r\n221 2.0.0 Bye\r\n"
        )
    );
    assert!(t.closed);
}

#[test]
fn unknown_verb_is_500_and_session_continues() {
    let out = talk(&format!("{}QUIT\r\n", "FOO\r\n".repeat(10)));
    assert_eq!(
        out,
        format!(
            "{GREETING}{}221 2.0.0 Bye\r\n",
            "500 5.5.2 Error: command not recognized\r\n".repeat(10)
        )
    );
}

#[test]
fn too_many_errors_closes_with_421() {
    let cfg = SessionConfig {
        max_errors: 3,
        ..SessionConfig::default()
    };
    let t = run_cfg(
        &cfg,
        b"FOO\r\nBAR\r\nNOOP\r\nFOO\r\nFOO\r\nFOO\r\nNOOP\r\n",
        &verdict,
        &outcome,
    );
    let e = "500 5.5.2 Error: command not recognized\r\n";
    assert_eq!(
        t.out,
        format!(
            "{GREETING}{e}{e}250 2.0.0 Ok\r\n{e}{e}{e}421 4.7.0 localhost Error: too many errors\r\n"
        )
    );
    assert!(t.closed);
}

#[test]
fn refused_recipients_do_not_count_as_protocol_errors() {
    let cfg = SessionConfig {
        max_errors: 2,
        ..SessionConfig::default()
    };
    let t = run_cfg(
        &cfg,
        b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<bad1@x>\r\nRCPT TO:<bad2@x>\r\nRCPT TO:<bad3@x>\r\n",
        &verdict,
        &outcome,
    );
    assert!(!t.closed);
    assert_eq!(t.out.matches("550 5.1.1").count(), 3);
}

#[test]
fn noop_args_ignored_rset_data_quit_args_are_501() {
    assert_eq!(
        talk("NOOP anything\r\nRSET x\r\nDATA x\r\nQUIT x\r\nNOOP\r\n"),
        format!(
            "{GREETING}250 2.0.0 Ok\r\n501 5.5.4 Syntax: RSET\r\n503 5.5.1 Error: send LHLO first\r\n\
             501 5.5.4 Syntax: QUIT\r\n250 2.0.0 Ok\r\n"
        )
    );
    assert_eq!(
        talk("LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA x\r\nNOOP\r\n"),
        lhlo("250 2.1.0 Ok\r\n250 2.1.5 <c@d> OK\r\n501 5.5.4 Syntax: DATA\r\n250 2.0.0 Ok\r\n")
    );
}

#[test]
fn vrfy_is_252_and_expn_is_502() {
    assert_eq!(
        talk("VRFY user\r\nVRFY\r\nEXPN list\r\n"),
        format!(
            "{GREETING}252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n\
             501 5.5.4 Syntax: VRFY address\r\n502 5.5.1 Error: command not implemented\r\n"
        )
    );
}

#[test]
fn help_is_214() {
    assert!(talk("HELP\r\n")
        .ends_with("214 2.0.0 Commands: LHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT\r\n"));
}

#[test]
fn quit_is_221_closes_and_ignores_the_rest() {
    let t = run_cfg(
        &SessionConfig::default(),
        b"QUIT\r\nNOOP\r\n",
        &verdict,
        &outcome,
    );
    assert_eq!(t.out, format!("{GREETING}221 2.0.0 Bye\r\n"));
    assert!(t.closed);
}

// ---- 10.2 envelope parsing -----------------------------------------------------------

const ENVELOPE: &str = "LHLO x\r\nMAIL FROM:<a@b>\r\n";

#[test]
fn mail_null_sender_is_accepted() {
    let t = run_cfg(
        &SessionConfig::default(),
        b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\n",
        &verdict,
        &outcome,
    );
    assert_eq!(t.msgs.len(), 1);
    assert_eq!(t.msgs[0].mail.sender, None);
    assert!(t.out.contains("250 2.1.0 Ok\r\n"));
}

#[test]
fn rcpt_source_route_is_stripped() {
    let t = run_cfg(
        &SessionConfig::default(),
        format!("{ENVELOPE}RCPT TO:<@a.example,@b.example:user@example.org>\r\n").as_bytes(),
        &verdict,
        &outcome,
    );
    assert_eq!(t.recipients[0].to_string(), "user@example.org");
    assert!(t.out.ends_with("250 2.1.5 <user@example.org> OK\r\n"));
}

#[test]
fn rcpt_quoted_local_parts_are_unquoted_and_equal() {
    let t = run_cfg(
        &SessionConfig::default(),
        format!(
            "{ENVELOPE}RCPT TO:<\"john doe\"@example.org>\r\nRCPT TO:<\"j\\\"x\"@example.org>\r\n\
             RCPT TO:<\"jdoe\"@x>\r\nRCPT TO:<jdoe@x>\r\nRCPT TO:<\"Joe\\,Smith\"@x>\r\n"
        )
        .as_bytes(),
        &verdict,
        &outcome,
    );
    let locals: Vec<&str> = t.recipients.iter().map(|m| m.local.as_str()).collect();
    assert_eq!(locals, ["john doe", "j\"x", "jdoe", "jdoe", "Joe,Smith"]);
    assert_eq!(t.recipients[2], t.recipients[3]);
    assert!(t
        .out
        .contains("250 2.1.5 <\"john doe\"@example.org> OK\r\n"));
}

#[test]
fn empty_quoted_local_part_is_501() {
    assert!(talk(&format!("{ENVELOPE}RCPT TO:<\"\"@x>\r\n"))
        .ends_with("501 5.1.3 Bad recipient address syntax\r\n"));
}

#[test]
fn rcpt_postmaster_without_domain_is_accepted() {
    let t = run_cfg(
        &SessionConfig::default(),
        format!("{ENVELOPE}RCPT TO:<Postmaster>\r\nRCPT TO:<POSTMASTER@example.org>\r\nRCPT TO:<joe>\r\n")
            .as_bytes(),
        &verdict,
        &outcome,
    );
    assert_eq!(t.recipients.len(), 2);
    assert_eq!(t.recipients[0].domain, None);
    assert!(t.recipients.iter().all(Mailbox::is_postmaster));
    assert!(t.out.ends_with(
        "250 2.1.5 <Postmaster> OK\r\n250 2.1.5 <POSTMASTER@example.org> OK\r\n\
         501 5.1.3 Bad recipient address syntax\r\n"
    ));
}

#[test]
fn mail_space_after_colon_is_501() {
    assert_eq!(
        talk("LHLO x\r\nMAIL FROM: <a@b>\r\nMAIL FROM:<a@b>\r\n"),
        lhlo("501 5.5.4 Syntax: MAIL FROM:<address>\r\n250 2.1.0 Ok\r\n")
    );
}

#[test]
fn mail_bad_sender_syntax_is_501_5_1_7() {
    assert!(talk("LHLO x\r\nMAIL FROM:<a@b..c>\r\n")
        .ends_with("501 5.1.7 Bad sender address syntax\r\n"));
}

#[test]
fn mail_parameters() {
    let cfg = SessionConfig {
        max_message_size: 1000,
        ..SessionConfig::default()
    };
    let script = "LHLO x\r\nMAIL FROM:<a@b> FOO=bar\r\nMAIL FROM:<a@b> SIZE=abc\r\n\
                  MAIL FROM:<a@b> SIZE=1001\r\nMAIL FROM:<a@b> BODY=BINARYMIME\r\n\
                  MAIL FROM:<a@b> SIZE=1 SIZE=2\r\nMAIL FROM:<a@b> SIZE=1000 BODY=8BITMIME SMTPUTF8\r\n";
    let t = run_cfg(&cfg, script.as_bytes(), &verdict, &outcome);
    let replies: Vec<&str> = t.out.lines().skip(9).map(|l| &l[..9]).collect();
    assert_eq!(
        replies,
        [
            "555 5.5.4",
            "501 5.5.4",
            "552 5.3.4",
            "555 5.5.4",
            "501 5.5.4",
            "250 2.1.0"
        ]
    );
}

#[test]
fn mail_non_ascii_sender_without_smtputf8_is_550() {
    assert!(talk("LHLO x\r\nMAIL FROM:<usér@b>\r\n")
        .ends_with("550 5.6.7 Non-ASCII sender requires SMTPUTF8\r\n"));
}

#[test]
fn rcpt_parameters_other_than_dsns_are_555() {
    assert!(
        talk(&format!("{ENVELOPE}RCPT TO:<user@example.org> XFOO=1\r\n"))
            .ends_with("555 5.5.4 Unsupported option\r\n")
    );
    assert!(talk(&format!(
        "{ENVELOPE}RCPT TO:<user@example.org> NOTIFY=SUCCESS ORCPT=rfc822;alias@example.org\r\n"
    ))
    .ends_with("250 2.1.5 <user@example.org> OK\r\n"));
}

#[test]
fn rcpt_non_ascii_without_smtputf8_is_553() {
    assert!(talk(&format!("{ENVELOPE}RCPT TO:<usér@x>\r\n"))
        .ends_with("553 5.6.7 Non-ASCII recipient requires SMTPUTF8\r\n"));
    let t = run_cfg(
        &SessionConfig::default(),
        b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<us\xe9r@x>\r\nNOOP\r\n",
        &verdict,
        &outcome,
    );
    assert!(t
        .out
        .ends_with("501 5.1.3 Bad recipient address syntax\r\n250 2.0.0 Ok\r\n"));
}

#[test]
fn rcpt_non_ascii_with_smtputf8_is_accepted() {
    assert!(
        talk("LHLO x\r\nMAIL FROM:<usér@exämple> SMTPUTF8\r\nRCPT TO:<usér@x>\r\n")
            .ends_with("250 2.1.0 Ok\r\n250 2.1.5 <usér@x> OK\r\n")
    );
}

#[test]
fn command_line_of_max_length_is_accepted() {
    // 512 octets including CRLF.
    let noop = format!("NOOP {}\r\n", "x".repeat(512 - 7));
    assert_eq!(noop.len(), 512);
    assert!(talk(&noop).ends_with("250 2.0.0 Ok\r\n"));
    let max = format!("NOOP {}\r\n", "x".repeat(MAX_COMMAND_LINE - 7));
    assert_eq!(max.len(), 1064);
    assert!(talk(&max).ends_with("250 2.0.0 Ok\r\n"));
    let over = format!("NOOP {}\r\n", "x".repeat(MAX_COMMAND_LINE - 6));
    assert!(talk(&over).ends_with("500 5.5.2 Error: line too long\r\n"));
}

#[test]
fn command_line_too_long_is_500_and_stream_stays_in_sync() {
    let input = format!(
        "LHLO x\r\nMAIL FROM:<a@b> X={}\r\nMAIL FROM:<a@b>\r\n",
        "y".repeat(5000)
    );
    let t = run_cfg(
        &SessionConfig::default(),
        input.as_bytes(),
        &verdict,
        &outcome,
    );
    assert_eq!(
        t.out,
        lhlo("500 5.5.2 Error: line too long\r\n250 2.1.0 Ok\r\n")
    );
}

#[test]
fn long_line_with_cr_at_limit_boundary_stays_in_sync() {
    // The CR of the CRLF lands exactly where the bound would cut.
    let line = format!("NOOP {}\r\nNOOP\r\n", "z".repeat(MAX_COMMAND_LINE - 6));
    assert!(talk(&line).ends_with("500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n"));
}

#[test]
fn bare_lf_in_command_is_one_error_not_two_commands() {
    assert_eq!(
        talk("NOOP\nQUIT\r\nNOOP\rQUIT\r\nNOOP\r\r\n"),
        format!(
            "{GREETING}{}",
            "500 5.5.2 Error: bare <CR> or <LF> in command\r\n".repeat(3)
        )
    );
}

#[test]
fn trailing_whitespace_is_tolerated() {
    assert_eq!(
        talk("LHLO x \r\nMAIL FROM:<a@b>  \r\nQUIT\t\r\n"),
        lhlo("250 2.1.0 Ok\r\n221 2.0.0 Bye\r\n")
    );
}

// ---- 10.3 sequencing ------------------------------------------------------------------

#[test]
fn rcpt_and_data_before_mail_are_503() {
    assert_eq!(
        talk("LHLO x\r\nRCPT TO:<a@b>\r\nDATA\r\n"),
        lhlo("503 5.5.1 Error: need MAIL command\r\n503 5.5.1 Error: need MAIL command\r\n")
    );
}

#[test]
fn nested_mail_is_503() {
    assert_eq!(
        talk("LHLO x\r\nMAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\n"),
        lhlo("250 2.1.0 Ok\r\n503 5.5.1 Error: nested MAIL command\r\n")
    );
}

#[test]
fn data_without_recipients_is_503() {
    let t = run_cfg(
        &SessionConfig::default(),
        b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<bad1@x>\r\nRCPT TO:<bad2@x>\r\nDATA\r\nNOOP\r\n",
        &verdict,
        &outcome,
    );
    assert_eq!(
        t.out,
        lhlo(
            "250 2.1.0 Ok\r\n550 5.1.1 <bad1@x> User unknown\r\n550 5.1.1 <bad2@x> User unknown\r\n\
             503 5.5.1 Error: no valid recipients\r\n250 2.0.0 Ok\r\n"
        )
    );
    assert!(t.msgs.is_empty());
}

#[test]
fn rset_clears_recipients_then_data_is_503() {
    assert_eq!(
        talk("LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRSET\r\nDATA\r\n"),
        lhlo("250 2.1.0 Ok\r\n250 2.1.5 <c@d> OK\r\n250 2.0.0 Ok\r\n503 5.5.1 Error: need MAIL command\r\n")
    );
}

#[test]
fn too_many_recipients_is_452() {
    let cfg = SessionConfig {
        max_recipients: 2,
        ..SessionConfig::default()
    };
    let t = run_cfg(
        &cfg,
        b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r1@x>\r\nRCPT TO:<r2@x>\r\nRCPT TO:<r3@x>\r\nDATA\r\nhi\r\n.\r\n",
        &verdict,
        &outcome,
    );
    assert!(t.out.contains("452 4.5.3 Error: too many recipients\r\n"));
    assert_eq!(t.msgs[0].rcpts, ["r1@x", "r2@x"]);
    assert!(t
        .out
        .ends_with("250 2.0.0 <r1@x> Saved\r\n250 2.0.0 <r2@x> Saved\r\n"));
}

#[test]
fn hundred_recipients_fit() {
    let mut script = String::from("LHLO x\r\nMAIL FROM:<a@b>\r\n");
    for i in 0..100 {
        script.push_str(&format!("RCPT TO:<r{i}@x>\r\n"));
    }
    script.push_str("DATA\r\nx\r\n.\r\n");
    let t = drive(
        &SessionConfig::default(),
        &[script.as_bytes()],
        &verdict,
        &outcome,
    );
    assert_eq!(t.msgs[0].rcpts.len(), 100);
    assert_eq!(t.out.matches(" Saved\r\n").count(), 100);
    check_replies(&t.out, "localhost");
}

// ---- 10.4 per-recipient replies -------------------------------------------------------

#[test]
fn one_post_dot_reply_per_accepted_rcpt_in_order() {
    let out = talk(
        "LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<bad@x>\r\nRCPT TO:<c@x>\r\n\
         RCPT TO:<d@x>\r\nDATA\r\nhello\r\n.\r\nNOOP\r\n",
    );
    assert_eq!(
        out,
        lhlo(
            "250 2.1.0 Ok\r\n250 2.1.5 <a@x> OK\r\n550 5.1.1 <bad@x> User unknown\r\n\
             250 2.1.5 <c@x> OK\r\n250 2.1.5 <d@x> OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n\
             250 2.0.0 <a@x> Saved\r\n250 2.0.0 <c@x> Saved\r\n250 2.0.0 <d@x> Saved\r\n\
             250 2.0.0 Ok\r\n"
        )
    );
}

#[test]
fn duplicate_recipients_get_two_replies() {
    let out = talk("LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n.\r\n");
    assert!(out.ends_with("250 2.0.0 <a@x> Saved\r\n250 2.0.0 <a@x> Saved\r\n"));
}

#[test]
fn per_recipient_outcomes_can_differ() {
    let out = talk(
        "LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<full@x>\r\nRCPT TO:<tmp@x>\r\n\
         RCPT TO:<c@x>\r\nDATA\r\nhi\r\n.\r\n",
    );
    assert!(out.ends_with(
        "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 <a@x> Saved\r\n\
         452 4.2.2 <full@x> Mailbox full\r\n250 2.0.0 <c@x> Saved\r\n"
    ));
    assert!(out.contains("451 4.3.0 <tmp@x> Try again\r\n"));
}

#[test]
fn message_over_size_limit_is_552_per_recipient() {
    let cfg = SessionConfig {
        max_message_size: 20,
        ..SessionConfig::default()
    };
    let t = run_cfg(
        &cfg,
        b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n\
          0123456789\r\n0123456789\r\n.\r\nNOOP\r\n",
        &verdict,
        &outcome,
    );
    assert!(t.out.ends_with(
        "354 End data with <CR><LF>.<CR><LF>\r\n552 5.3.4 Message size exceeds fixed limit\r\n\
         552 5.3.4 Message size exceeds fixed limit\r\n250 2.0.0 Ok\r\n"
    ));
    assert_eq!(t.msgs.len(), 1);
    assert_eq!(t.msgs[0].size, 24);
    assert!(t.msgs[0].discarded.is_some());
    assert!(t.msgs[0].body.len() <= 20);
}

#[test]
fn message_at_size_limit_is_accepted() {
    let cfg = SessionConfig {
        max_message_size: 24,
        ..SessionConfig::default()
    };
    let t = run_cfg(
        &cfg,
        b"LHLO x\r\nMAIL FROM:<s@x> SIZE=24\r\nRCPT TO:<a@x>\r\nDATA\r\n0123456789\r\n0123456789\r\n.\r\n",
        &verdict,
        &outcome,
    );
    assert_eq!(t.msgs[0].discarded, None);
    assert_eq!(t.msgs[0].body, b"0123456789\n0123456789\n");
    assert_eq!(t.msgs[0].size, 24);
    assert_eq!(t.msgs[0].mail.size, Some(24));
}

// ---- 10.5 pipelining ----------------------------------------------------------------

#[test]
fn pipelined_mail_rcpt_data_replies_in_order() {
    assert_eq!(
        talk("LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"),
        lhlo(
            "250 2.1.0 Ok\r\n250 2.1.5 <a@x> OK\r\n250 2.1.5 <b@x> OK\r\n\
             354 End data with <CR><LF>.<CR><LF>\r\n"
        )
    );
}

#[test]
fn pipelined_bad_rcpts_get_503_for_data_and_no_data_state() {
    let out = talk(
        "LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<bad1@x>\r\nRCPT TO:<bad2@x>\r\nDATA\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(
        out,
        lhlo(
            "250 2.1.0 Ok\r\n550 5.1.1 <bad1@x> User unknown\r\n550 5.1.1 <bad2@x> User unknown\r\n\
             503 5.5.1 Error: no valid recipients\r\n500 5.5.2 Error: command not recognized\r\n\
             221 2.0.0 Bye\r\n"
        )
    );
}

#[test]
fn dot_and_quit_in_one_chunk() {
    let t = run_cfg(
        &SessionConfig::default(),
        b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nbody\r\n.\r\nQUIT\r\n",
        &verdict,
        &outcome,
    );
    assert!(t
        .out
        .ends_with("250 2.0.0 <a@x> Saved\r\n250 2.0.0 <b@x> Saved\r\n221 2.0.0 Bye\r\n"));
    assert!(t.closed);
    assert_eq!(t.msgs[0].body, b"body\n");
}

#[test]
fn dot_and_next_transaction_in_one_chunk() {
    let t = run_cfg(
        &SessionConfig::default(),
        b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\none\r\n.\r\n\
          MAIL FROM:<x@y>\r\nRCPT TO:<b@z>\r\nDATA\r\ntwo\r\n.\r\n",
        &verdict,
        &outcome,
    );
    assert_eq!(t.msgs.len(), 2);
    assert_eq!(t.msgs[0].body, b"one\n");
    assert_eq!(t.msgs[1].body, b"two\n");
    assert_eq!(t.msgs[1].rcpts, ["b@z"]);
    assert!(t.out.ends_with(
        "250 2.0.0 <a@x> Saved\r\n250 2.1.0 Ok\r\n250 2.1.5 <b@z> OK\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 <b@z> Saved\r\n"
    ));
}

#[test]
fn failing_command_does_not_discard_following_commands() {
    assert_eq!(
        talk("LHLO x\r\nMAIL FROM:<s@x> FOO=1\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\n"),
        lhlo("555 5.5.4 Unsupported option\r\n250 2.1.0 Ok\r\n250 2.1.5 <a@x> OK\r\n")
    );
}

#[test]
fn nothing_is_processed_while_awaiting_verdict_or_outcomes() {
    let mut s: Session<u32> = Session::new(SessionConfig::default());
    s.receive(
        b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n.\r\nNOOP\r\n",
    );
    assert!(matches!(s.poll(), Some(Event::Recipient(_))));
    assert!(s.poll().is_none());
    assert!(s.poll().is_none());
    s.recipient_verdict(Ok(1));
    assert!(matches!(s.poll(), Some(Event::Recipient(_))));
    s.recipient_verdict(Ok(2));
    assert!(matches!(s.poll(), Some(Event::MessageStart)));
    let Some(Event::MessageEnd(tx)) = s.poll() else {
        panic!("expected MessageEnd")
    };
    assert_eq!(tx.rcpts, [1, 2]);
    assert_eq!(tx.lhlo, "x");
    assert!(s.poll().is_none());
    assert!(!s.is_idle());
    s.delivery_outcome(Reply::new(250, Enhanced(2, 0, 0), "one"));
    assert!(s.poll().is_none());
    s.delivery_outcome(Reply::new(250, Enhanced(2, 0, 0), "two"));
    assert!(s.poll().is_none());
    let out = String::from_utf8(s.take_output()).unwrap();
    assert!(out.ends_with(
        "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 one\r\n250 2.0.0 two\r\n250 2.0.0 Ok\r\n"
    ));
    assert!(s.is_idle());
    // Stray calls are ignored.
    s.delivery_outcome(Reply::new(250, Enhanced(2, 0, 0), "stray"));
    s.recipient_verdict(Ok(3));
    assert!(s.output().is_empty());
}

#[test]
fn an_idle_session_gives_back_what_its_last_message_needed() {
    let mut s: Session<u32> = Session::new(SessionConfig::default());
    let mut input = b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 60_000));
    input.extend_from_slice(b"\r\n.\r\n");
    s.receive(&input);
    assert!(matches!(s.poll(), Some(Event::Recipient(_))));
    s.recipient_verdict(Ok(1));
    assert!(matches!(s.poll(), Some(Event::MessageStart)));
    s.shrink_idle(); // inside a transaction: nothing changes
    while let Some(ev) = s.poll() {
        if matches!(ev, Event::MessageEnd(_)) {
            break;
        }
    }
    s.delivery_outcome(Reply::new(250, Enhanced(2, 0, 0), "ok"));
    assert!(s.input.capacity() > 60_000 && s.body.capacity() > IDLE_BUFFER);
    let _ = s.take_output();
    s.shrink_idle();
    assert!(s.input.capacity() <= IDLE_BUFFER, "{}", s.input.capacity());
    assert!(s.body.capacity() <= IDLE_BUFFER, "{}", s.body.capacity());
    // Still a working session.
    s.receive(b"NOOP\r\n");
    assert!(s.poll().is_none());
    assert_eq!(s.take_output(), b"250 2.0.0 Ok\r\n");
}

#[test]
fn every_accepted_mail_starts_a_new_transaction_number() {
    // The driver pins its settings per transaction by this number (RFC 5321 §3.3: MAIL
    // begins a transaction; RSET or a refused MAIL does not).
    let mut s: Session<u32> = Session::new(SessionConfig::default());
    assert_eq!(s.transaction(), 0);
    s.receive(b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\n");
    assert!(matches!(s.poll(), Some(Event::Recipient(_))));
    assert_eq!(s.transaction(), 1);
    s.recipient_verdict(Ok(1));
    s.receive(b"MAIL FROM:<s@x>\r\nRSET\r\nRSET\r\nMAIL FROM:<t@x>\r\nRCPT TO:<b@x>\r\n");
    assert!(matches!(s.poll(), Some(Event::Recipient(_))));
    assert_eq!(
        s.transaction(),
        2,
        "nested MAIL is refused, RSET starts none"
    );
    let out = String::from_utf8(s.take_output()).unwrap();
    assert!(
        out.contains("503 5.5.1 Error: nested MAIL command"),
        "{out}"
    );
}

// ---- 10.6 DATA content, transparency, smuggling ------------------------------------

fn one_message(cfg: &SessionConfig, content: &[u8]) -> Transcript {
    let mut input =
        b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n".to_vec();
    input.extend_from_slice(content);
    run_cfg(cfg, &input, &verdict, &outcome)
}

#[test]
fn dot_unstuffing_and_lone_dot_ends_data() {
    let t = one_message(
        &SessionConfig::default(),
        b"..foo\r\n..\r\n.x\r\n.\r\nNOOP\r\n",
    );
    assert_eq!(t.msgs[0].body, b".foo\n.\nx\n");
    assert!(t.out.ends_with("250 2.0.0 Ok\r\n"));
}

#[test]
fn message_ends_with_last_line_and_no_extra_blank_line() {
    let t = one_message(
        &SessionConfig::default(),
        b"Subject: x\r\n\r\nlast\r\n.\r\n",
    );
    assert_eq!(t.msgs[0].body, b"Subject: x\n\nlast\n");
    assert_eq!(t.msgs[0].size, 20);
}

#[test]
fn empty_message_right_after_354() {
    let t = one_message(&SessionConfig::default(), b".\r\n");
    assert_eq!(t.msgs[0].body, b"");
    assert_eq!(t.msgs[0].size, 0);
    assert_eq!(t.msgs[0].discarded, None);
}

#[test]
fn long_content_lines_are_fine() {
    let mut content = vec![b'x'; 10_000];
    content.extend_from_slice(b"\r\n");
    content.extend(std::iter::repeat_n(b'y', 998));
    content.extend_from_slice(b"\r\n.\r\n");
    let input = [
        &b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n"[..],
        &content,
    ]
    .concat();
    let t = drive(&SessionConfig::default(), &[&input], &verdict, &outcome);
    assert_eq!(t.msgs[0].body.len(), 10_000 + 1 + 998 + 1);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(
        drive(&SessionConfig::default(), &bytes, &verdict, &outcome),
        t
    );
}

#[test]
fn eight_bit_and_control_content_is_bit_exact() {
    let mut content: Vec<u8> = (0u8..=255).filter(|&b| b != b'\r' && b != b'\n').collect();
    content.extend_from_slice(b"\r\n.\r\n");
    let t = one_message(&SessionConfig::default(), &content);
    let mut want: Vec<u8> = (0u8..=255).filter(|&b| b != b'\r' && b != b'\n').collect();
    want.push(b'\n');
    assert_eq!(t.msgs[0].body, want);
}

#[test]
fn lf_dot_lf_does_not_end_data() {
    let t = one_message(
        &SessionConfig::default(),
        b"body\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nforged\r\n.\r\n",
    );
    assert_eq!(t.msgs.len(), 1);
    assert_eq!(t.msgs[0].rcpts, ["a@x", "b@x"]);
    assert_eq!(
        t.msgs[0].body,
        b"body\n.\nMAIL FROM:<evil@x>\nRCPT TO:<victim@y>\nDATA\nforged\n"
    );
    assert_eq!(t.out.matches(" Saved\r\n").count(), 2);
    assert!(!t.out.contains("victim"));
}

#[test]
fn smuggling_variants_do_not_end_data() {
    for eot in [
        &b"\n.\r\n"[..],
        b"\r\n.\n",
        b"\r.\r",
        b"\r\n.\r\r\n",
        b"\n.\n",
        b"\r.\r\n",
    ] {
        let mut content = b"body".to_vec();
        content.extend_from_slice(eot);
        content.extend_from_slice(b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\n.\r\n");
        let t = one_message(&SessionConfig::default(), &content);
        assert_eq!(t.msgs.len(), 1, "{eot:?}");
        assert_eq!(t.recipients.len(), 2, "{eot:?}");
        assert!(
            t.msgs[0].body.windows(9).any(|w| w == b"MAIL FROM"),
            "{eot:?}"
        );
        assert_eq!(t.out.matches(" Saved\r\n").count(), 2, "{eot:?}");
    }
}

#[test]
fn bare_newline_reject_mode_is_550_per_recipient() {
    let t = one_message(
        &reject_cfg(),
        b"body\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nforged\r\n.\r\nNOOP\r\n",
    );
    assert_eq!(t.msgs.len(), 1);
    assert_eq!(
        t.msgs[0].discarded,
        Some(Reply::new(
            550,
            Enhanced(5, 5, 2),
            "Bare <CR> or <LF> received"
        ))
    );
    assert!(t.out.ends_with(
        "354 End data with <CR><LF>.<CR><LF>\r\n550 5.5.2 Bare <CR> or <LF> received\r\n\
         550 5.5.2 Bare <CR> or <LF> received\r\n250 2.0.0 Ok\r\n"
    ));
    let t = one_message(&reject_cfg(), b"a\rb\r\n.\r\n");
    assert!(t.msgs[0].discarded.is_some());
    let t = one_message(&reject_cfg(), b"clean\r\n.\r\n");
    assert_eq!(t.msgs[0].discarded, None);
}

#[test]
fn body_events_come_in_large_chunks() {
    let mut s: Session<()> = Session::new(SessionConfig::default());
    s.receive(b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\n");
    while let Some(ev) = s.poll() {
        if let Event::Recipient(_) = ev {
            s.recipient_verdict(Ok(()));
        }
    }
    s.receive(b"DATA\r\n");
    assert!(matches!(s.poll(), Some(Event::MessageStart)));
    assert!(s.poll().is_none());
    let chunk = b"line of text\r\n".repeat(4000);
    s.receive(&chunk);
    match s.poll() {
        Some(Event::Body(b)) => assert_eq!(b.len(), 13 * 4000),
        other => panic!("{other:?}"),
    }
    assert!(s.poll().is_none());
    assert!(s.in_data());
}

// ---- CHUNKING / BDAT (RFC 3030, RFC 2033 §4.3) ----------------------------------------

const T2: &str = "LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n";
const T2_REPLIES: &str = "250 2.1.0 Ok\r\n250 2.1.5 <a@x> OK\r\n250 2.1.5 <b@x> OK\r\n";

fn bdat_talk(cfg: &SessionConfig, input: &str) -> Transcript {
    run_cfg(cfg, input.as_bytes(), &verdict, &outcome)
}

#[test]
fn bdat_chunks_make_one_message_and_last_gets_one_reply_per_recipient() {
    let t = bdat_talk(
        &SessionConfig::default(),
        &format!("{T2}BDAT 5\r\nab\r\ncBDAT 4 LAST\r\nd\r\n\rNOOP\r\n"),
    );
    assert_eq!(
        t.out,
        lhlo(&format!(
            "{T2_REPLIES}250 2.0.0 5 octets received\r\n\
             250 2.0.0 <a@x> Saved\r\n250 2.0.0 <b@x> Saved\r\n250 2.0.0 Ok\r\n"
        ))
    );
    assert_eq!(t.msgs.len(), 1);
    // CRLF -> LF across the chunk boundary and inside; the trailing bare CR is content.
    assert_eq!(t.msgs[0].body, b"ab\ncd\n\r");
    assert_eq!(t.msgs[0].size, 9);
}

#[test]
fn bdat_crlf_split_between_chunks_is_one_line_break() {
    let t = bdat_talk(
        &SessionConfig::default(),
        &format!("{T2}BDAT 2\r\na\rBDAT 2 LAST\r\n\nb"),
    );
    assert_eq!(t.msgs[0].body, b"a\nb");
}

#[test]
fn bdat_content_is_not_dot_unstuffed_and_has_no_end_marker() {
    let t = bdat_talk(
        &SessionConfig::default(),
        &format!("{T2}BDAT 14 LAST\r\n..x\r\n.\r\nQUIT\r\nNOOP\r\n"),
    );
    assert_eq!(t.msgs[0].body, b"..x\n.\nQUIT\n");
    assert!(t.out.ends_with("250 2.0.0 <b@x> Saved\r\n250 2.0.0 Ok\r\n"));
    assert!(!t.closed);
}

#[test]
fn bdat_0_last_ends_a_message() {
    let t = bdat_talk(&SessionConfig::default(), &format!("{T2}BDAT 0 LAST\r\n"));
    assert!(t
        .out
        .ends_with("250 2.0.0 <a@x> Saved\r\n250 2.0.0 <b@x> Saved\r\n"));
    assert_eq!(t.msgs.len(), 1);
    assert!(t.msgs[0].body.is_empty());
    let t = bdat_talk(
        &SessionConfig::default(),
        &format!("{T2}BDAT 3\r\nabcBDAT 0\r\nBDAT 0 LAST\r\n"),
    );
    assert!(t.out.contains("250 2.0.0 0 octets received\r\n"));
    assert_eq!(t.msgs[0].body, b"abc");
}

#[test]
fn bdat_last_with_no_accepted_recipient_gets_zero_replies() {
    let t = bdat_talk(
        &SessionConfig::default(),
        "LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<bad@x>\r\nBDAT 3 LAST\r\nabcNOOP\r\n",
    );
    assert_eq!(
        t.out,
        lhlo("250 2.1.0 Ok\r\n550 5.1.1 <bad@x> User unknown\r\n250 2.0.0 Ok\r\n")
    );
    assert!(t.msgs.is_empty());
    assert!(!t.log.windows(7).any(|w| w == b"[start]"));
}

#[test]
fn bdat_non_last_with_no_accepted_recipient_gets_one_503() {
    let t = bdat_talk(
        &SessionConfig::default(),
        "LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<bad@x>\r\nBDAT 3\r\nabcBDAT 1 LAST\r\nxNOOP\r\n",
    );
    assert!(t.out.ends_with(
        "550 5.1.1 <bad@x> User unknown\r\n503 5.5.1 Error: no valid recipients\r\n\
         250 2.0.0 Ok\r\n"
    ));
}

#[test]
fn bdat_octets_are_read_even_when_the_command_fails() {
    // Before LHLO, before MAIL, after LAST: one 503 each, and the chunk octets (which look
    // like commands) are never executed.
    let t = bdat_talk(
        &SessionConfig::default(),
        "BDAT 6\r\nQUIT\r\nLHLO x\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n",
    );
    assert_eq!(
        t.out,
        lhlo("503 5.5.1 Error: send LHLO first\r\n503 5.5.1 Error: need MAIL command\r\n250 2.0.0 Ok\r\n")
            .replacen(GREETING, "", 1)
            .replacen("250-localhost", &format!("{GREETING}503 5.5.1 Error: send LHLO first\r\n250-localhost"), 1)
            .replacen("503 5.5.1 Error: send LHLO first\r\n503", "503", 1)
    );
    assert!(!t.closed);
    let t = bdat_talk(
        &SessionConfig::default(),
        &format!("{T2}BDAT 2 LAST\r\nokBDAT 6\r\nQUIT\r\nNOOP\r\n"),
    );
    assert!(t.out.ends_with(
        "250 2.0.0 <b@x> Saved\r\n503 5.5.1 Error: need MAIL command\r\n250 2.0.0 Ok\r\n"
    ));
    assert!(!t.closed);
}

#[test]
fn bdat_bad_arguments_with_a_size_are_501_and_the_chunk_is_skipped() {
    let t = bdat_talk(
        &SessionConfig::default(),
        &format!("{T2}BDAT 6 FIRST\r\nQUIT\r\nBDAT 1 LAST\r\nxRSET\r\nNOOP\r\n"),
    );
    assert!(t.out.ends_with(&format!(
        "{T2_REPLIES}501 5.5.4 Syntax: BDAT size [LAST]\r\n\
         503 5.5.0 Error: an earlier BDAT failed, send RSET\r\n\
         503 5.5.0 Error: an earlier BDAT failed, send RSET\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
    )));
    assert!(!t.closed);
}

#[test]
fn bdat_size_that_is_not_a_number_is_501_then_421_close() {
    for bad in [
        "BDAT",
        "BDAT x",
        "BDAT -1",
        "BDAT 1x",
        "BDAT 99999999999999999999",
    ] {
        let t = bdat_talk(
            &SessionConfig::default(),
            &format!("{T2}{bad}\r\nQUIT\r\nNOOP\r\n"),
        );
        assert!(
            t.out.ends_with(
                "501 5.5.4 Syntax: BDAT size [LAST]\r\n\
                 421 4.5.0 localhost Error: BDAT size unreadable, closing connection\r\n"
            ),
            "{bad}: {}",
            t.out
        );
        assert!(t.closed);
    }
}

#[test]
fn bdat_failed_chunk_makes_later_chunks_503_until_rset() {
    let cfg = SessionConfig {
        max_message_size: 10,
        ..SessionConfig::default()
    };
    let t = bdat_talk(
        &cfg,
        &format!(
            "{T2}BDAT 6\r\nabcdefBDAT 6\r\nQUIT\r\nBDAT 2\r\nxyBDAT 1 LAST\r\nzRSET\r\n\
             MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nBDAT 1 LAST\r\nk"
        ),
    );
    assert!(t.out.ends_with(&format!(
        "{T2_REPLIES}250 2.0.0 6 octets received\r\n\
         552 5.3.4 Message size exceeds fixed limit\r\n\
         503 5.5.0 Error: an earlier BDAT failed, send RSET\r\n\
         503 5.5.0 Error: an earlier BDAT failed, send RSET\r\n\
         503 5.5.0 Error: an earlier BDAT failed, send RSET\r\n\
         250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 <a@x> OK\r\n250 2.0.0 <a@x> Saved\r\n"
    )));
    // The first message was started, abandoned at the failure and refused at LAST.
    assert_eq!(t.msgs.len(), 2);
    assert!(t.msgs[0].discarded.is_some());
    assert_eq!(t.msgs[1].body, b"k");
    let log = String::from_utf8_lossy(&t.log);
    assert!(
        log.contains("[start]\n\n[abandoned]\n\n[discarded]"),
        "{log}"
    );
}

#[test]
fn bdat_size_limit_counts_all_chunks_and_refuses_last_per_recipient() {
    let cfg = SessionConfig {
        max_message_size: 10,
        ..SessionConfig::default()
    };
    let t = bdat_talk(
        &cfg,
        &format!("{T2}BDAT 10\r\n0123456789BDAT 1 LAST\r\nxNOOP\r\n"),
    );
    assert!(t.out.ends_with(
        "250 2.0.0 10 octets received\r\n552 5.3.4 Message size exceeds fixed limit\r\n\
         552 5.3.4 Message size exceeds fixed limit\r\n250 2.0.0 Ok\r\n"
    ));
    assert_eq!(t.msgs.len(), 1);
    assert_eq!(t.msgs[0].size, 11);
    assert!(t.msgs[0].discarded.is_some());
    // At the limit it is accepted.
    let t = bdat_talk(&cfg, &format!("{T2}BDAT 10 LAST\r\n0123456789"));
    assert!(t.out.ends_with("250 2.0.0 <b@x> Saved\r\n"));
    assert_eq!(t.msgs[0].body, b"0123456789");
}

#[test]
fn bdat_oversized_chunk_is_read_to_its_end_and_stays_in_sync() {
    let cfg = SessionConfig {
        max_message_size: 4,
        ..SessionConfig::default()
    };
    let t = bdat_talk(
        &cfg,
        &format!("{T2}BDAT 13\r\nRCPT TO:<c@x>RSET\r\nNOOP\r\n"),
    );
    assert!(
        t.out.ends_with(&format!(
            "{T2_REPLIES}552 5.3.4 Message size exceeds fixed limit\r\n250 2.0.0 Ok\r\n\
         250 2.0.0 Ok\r\n"
        )),
        "{}",
        t.out
    );
    assert!(t.recipients.iter().all(|m| m.local != "c"));
    assert!(t.msgs.is_empty());
    assert!(
        t.body.is_none(),
        "nothing of an oversized first chunk is spooled"
    );
}

#[test]
fn data_after_bdat_and_rcpt_after_bdat_are_503() {
    let t = bdat_talk(
        &SessionConfig::default(),
        &format!("{T2}BDAT 1\r\nxDATA\r\nRCPT TO:<c@x>\r\nBDAT 1 LAST\r\ny"),
    );
    assert!(t.out.ends_with(
        "250 2.0.0 1 octets received\r\n503 5.5.1 Error: DATA after BDAT\r\n\
         503 5.5.1 Error: RCPT after BDAT\r\n250 2.0.0 <a@x> Saved\r\n\
         250 2.0.0 <b@x> Saved\r\n"
    ));
    assert_eq!(t.msgs[0].body, b"xy");
}

#[test]
fn bdat_after_data_and_data_after_bdat_last_are_new_transactions() {
    let t = bdat_talk(
        &SessionConfig::default(),
        &format!(
            "{T2}DATA\r\nhi\r\n.\r\nBDAT 1 LAST\r\nx\
             MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nBDAT 1 LAST\r\nz\
             MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\nd\r\n.\r\n"
        ),
    );
    assert!(t.out.contains(
        "250 2.0.0 <b@x> Saved\r\n503 5.5.1 Error: need MAIL command\r\n250 2.1.0 Ok\r\n"
    ));
    let bodies: Vec<&[u8]> = t.msgs.iter().map(|m| &m.body[..]).collect();
    assert_eq!(bodies, [&b"hi\n"[..], b"z", b"d\n"]);
}

#[test]
fn rset_between_chunks_abandons_the_message() {
    let t = bdat_talk(
        &SessionConfig::default(),
        &format!("{T2}BDAT 3\r\nabcRSET\r\nBDAT 1\r\nx"),
    );
    assert!(t.out.ends_with(
        "250 2.0.0 3 octets received\r\n250 2.0.0 Ok\r\n503 5.5.1 Error: need MAIL command\r\n"
    ));
    assert!(t.msgs.is_empty());
    assert!(String::from_utf8_lossy(&t.log).contains("[start]\n\n[abandoned]"));
}

#[test]
fn bdat_bare_newline_reject_mode_is_550_per_recipient() {
    let t = bdat_talk(&reject_cfg(), &format!("{T2}BDAT 3 LAST\r\na\nb"));
    assert!(t.out.ends_with(
        "550 5.5.2 Bare <CR> or <LF> received\r\n550 5.5.2 Bare <CR> or <LF> received\r\n"
    ));
    let t = bdat_talk(
        &reject_cfg(),
        &format!("{T2}BDAT 2\r\na\rBDAT 1 LAST\r\n\n"),
    );
    assert!(
        t.out.ends_with("250 2.0.0 <b@x> Saved\r\n"),
        "a CRLF split by chunks is no bare CR"
    );
}

#[test]
fn eof_inside_a_chunk_yields_no_message() {
    let t = super::testing::drive(
        &SessionConfig::default(),
        &[format!("{T2}BDAT 10 LAST\r\nabc").as_bytes()],
        true,
        &mut |m| verdict(m),
        &mut |r: &String| outcome(r),
    );
    assert!(t.msgs.is_empty());
    assert!(t.closed);
}

#[test]
fn bdat_in_pipelined_transaction_with_quit() {
    let t = bdat_talk(
        &SessionConfig::default(),
        &format!("{T2}BDAT 2 LAST\r\nhiQUIT\r\n"),
    );
    assert!(t
        .out
        .ends_with("250 2.0.0 <b@x> Saved\r\n221 2.0.0 Bye\r\n"));
    assert!(t.closed);
}

// ---- 10.8 connection loss, timeouts, shutdown --------------------------------------

#[test]
fn timeout_queues_421_and_closes() {
    let mut s: Session<()> = Session::new(SessionConfig::default());
    s.receive(b"LHLO x\r\nMAIL FROM:<s@x>\r\n");
    while s.poll().is_some() {}
    s.timeout();
    assert!(s.is_closed());
    assert!(matches!(s.poll(), Some(Event::Close)));
    assert!(s.poll().is_none());
    let out = String::from_utf8(s.take_output()).unwrap();
    assert!(out.ends_with("421 4.4.2 localhost Error: timeout exceeded\r\n"));
    s.receive(b"NOOP\r\n");
    assert!(s.poll().is_none());
    assert!(s.output().is_empty());
}

#[test]
fn shutdown_only_when_idle() {
    let mut s: Session<()> = Session::new(SessionConfig::default());
    assert!(s.is_idle());
    s.receive(b"LHLO x\r\nMAIL FROM:<s@x>\r\nNO");
    while s.poll().is_some() {}
    assert!(!s.is_idle());
    assert!(!s.shutdown());
    s.receive(b"OP\r\nRSET\r\n");
    while s.poll().is_some() {}
    assert!(s.is_idle());
    assert!(s.shutdown());
    assert!(matches!(s.poll(), Some(Event::Close)));
    let out = String::from_utf8(s.take_output()).unwrap();
    assert!(out.ends_with("250 2.0.0 Ok\r\n421 4.3.2 localhost Service shutting down\r\n"));
    assert!(s.shutdown());
}

#[test]
fn shutdown_refused_in_data_and_while_awaiting_verdict() {
    let mut s: Session<()> = Session::new(SessionConfig::default());
    s.receive(b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\n");
    while let Some(ev) = s.poll() {
        if let Event::Recipient(_) = ev {
            assert!(!s.shutdown());
            s.recipient_verdict(Ok(()));
        }
    }
    s.receive(b"DATA\r\n");
    assert!(matches!(s.poll(), Some(Event::MessageStart)));
    assert!(s.in_data());
    assert!(!s.shutdown());
    assert!(!s.is_idle());
}

#[test]
fn eof_mid_data_yields_no_message_event() {
    let mut s: Session<()> = Session::new(SessionConfig::default());
    s.receive(b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\n");
    while let Some(ev) = s.poll() {
        if let Event::Recipient(_) = ev {
            s.recipient_verdict(Ok(()));
        }
    }
    s.receive(b"DATA\r\npartial\r\n");
    assert!(matches!(s.poll(), Some(Event::MessageStart)));
    assert!(matches!(s.poll(), Some(Event::Body(b"partial\n"))));
    s.eof();
    assert!(matches!(s.poll(), Some(Event::Close)));
    assert!(s.poll().is_none());
    assert!(s.is_closed() && !s.in_data());
}

#[test]
fn eof_while_awaiting_outcomes_ignores_later_outcomes() {
    let mut s: Session<()> = Session::new(SessionConfig::default());
    s.receive(b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\n");
    while let Some(ev) = s.poll() {
        if let Event::Recipient(_) = ev {
            s.recipient_verdict(Ok(()));
        }
    }
    s.receive(b"DATA\r\n.\r\n");
    assert!(matches!(s.poll(), Some(Event::MessageStart)));
    assert!(matches!(s.poll(), Some(Event::MessageEnd(_))));
    s.take_output();
    s.eof();
    s.delivery_outcome(Reply::new(250, Enhanced(2, 0, 0), "late"));
    assert!(matches!(s.poll(), Some(Event::Close)));
    assert!(s.output().is_empty());
}

// ---- 10.9 enhanced status code conformance -----------------------------------------

#[test]
fn every_reply_has_matching_enhanced_code() {
    let script = "NOOP\r\nRSET\r\nVRFY x\r\nVRFY\r\nEXPN x\r\nHELP\r\nFOO\r\nHELO x\r\nEHLO x\r\n\
                  MAIL FROM:<a@b>\r\nLHLO\r\nLHLO x\r\nRCPT TO:<a@b>\r\nDATA\r\n\
                  MAIL FROM: <a@b>\r\nMAIL FROM:<a@>\r\nMAIL FROM:<a@b> X=1\r\nMAIL FROM:<a@b> SIZE=x\r\n\
                  MAIL FROM:<é@b>\r\nMAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nDATA\r\n\
                  RCPT TO:<a>\r\nRCPT TO:<é@b>\r\nRCPT TO:<a@b> X=1\r\nRCPT TO:<bad@b>\r\nRCPT TO:<tmp@b>\r\n\
                  DATA\r\nRCPT TO:<a@b>\r\nRCPT TO:<full@b>\r\nDATA x\r\nDATA\r\nx\n.\r\n.\r\n\
                  NOOP\nx\r\nMAIL FROM:<a@b>\r\nRCPT TO:<a@b>\r\nDATA\r\n.\r\nQUIT x\r\nQUIT\r\n";
    let t = run_cfg(
        &SessionConfig::default(),
        script.as_bytes(),
        &verdict,
        &outcome,
    );
    assert!(t.closed);
    assert_eq!(t.msgs.len(), 2);
    for cfg in [
        reject_cfg(),
        SessionConfig {
            max_message_size: 3,
            max_recipients: 1,
            max_errors: 5,
            ..SessionConfig::default()
        },
    ] {
        let t = run_cfg(&cfg, script.as_bytes(), &verdict, &outcome);
        assert!(t.closed);
    }
}

// ---- robustness ------------------------------------------------------------------------

use crate::proto::testing::XorShift;

const PIECES: &[&[u8]] = &[
    b"LHLO x\r\n",
    b"MAIL FROM:<s@x>\r\n",
    b"MAIL FROM:<> SIZE=10 BODY=8BITMIME SMTPUTF8\r\n",
    b"RCPT TO:<a@x>\r\n",
    b"RCPT TO:<bad@x>\r\n",
    b"RCPT TO:<Postmaster>\r\n",
    b"RCPT TO:<\"q\\\"x\"@y>\r\n",
    b"RCPT TO:<@r,@s:u@v>\r\n",
    b"DATA\r\n",
    b"BDAT 3\r\n",
    b"BDAT 0 LAST\r\n",
    b"BDAT 5 LAST\r\n",
    b"BDAT 2 last\r\n",
    b"BDAT 4 X\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b".\r\n",
    b"..\r\n",
    b"\r\n",
    b"\n.\n",
    b"\r.\r",
    b"\r\n.\r\r\n",
    b"text line\r\n",
    b"\xff\xfe\x00",
    b"\r",
    b"\n",
    b".",
    b"<",
    b">",
    b"\"",
    b"@",
    b"MAIL FROM:<\xc3\xa9@x> SMTPUTF8\r\n",
    b"RCPT TO:<\xc3\xa9@x>\r\n",
];

fn random_input(rng: &mut XorShift) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..rng.below(40) {
        match rng.below(10) {
            0 => {
                for _ in 0..rng.below(20) {
                    v.push(rng.next_u64() as u8);
                }
            }
            1 => v.extend(std::iter::repeat_n(b'x', rng.below(1500))),
            _ => v.extend_from_slice(PIECES[rng.below(PIECES.len())]),
        }
    }
    // Mutate a few bytes.
    for _ in 0..rng.below(4) {
        if !v.is_empty() {
            let i = rng.below(v.len());
            v[i] = rng.next_u64() as u8;
        }
    }
    v
}

#[test]
fn random_inputs_never_panic_and_stay_bounded() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..2000 {
        let cfg = SessionConfig {
            max_message_size: [0, 5, 100][rng.below(3)],
            max_recipients: 1 + rng.below(3),
            max_errors: rng.below(30),
            bare_newline: if rng.below(2) == 0 {
                BareNewline::Normalize
            } else {
                BareNewline::Reject
            },
            ..SessionConfig::default()
        };
        let input = random_input(&mut rng);
        let mut chunks = Vec::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(700));
            let (a, b) = rest.split_at(n);
            chunks.push(a);
            rest = b;
        }
        let mut s: Session<u64> = Session::new(cfg.clone());
        let mut next_id = 0u64;
        let mut last_tx_id: Option<u64> = None;
        let mut accept = true;
        for c in chunks.iter().map(Some).chain([None]) {
            loop {
                assert!(s.body.len() <= 701, "round {round}");
                let ev = s.poll();
                match ev {
                    None => break,
                    Some(Event::Recipient(m)) => {
                        assert!(!m.local.is_empty());
                        accept = !accept;
                        if accept {
                            next_id += 1;
                            s.recipient_verdict(Ok(next_id));
                        } else {
                            s.recipient_verdict(Err(Reply::new(550, Enhanced(5, 1, 1), "no")));
                        }
                    }
                    Some(Event::MessageEnd(tx)) => {
                        check_tx(&tx.rcpts, &mut last_tx_id, round);
                        let before = s.output().len();
                        for _ in &tx.rcpts {
                            s.delivery_outcome(Reply::new(250, Enhanced(2, 0, 0), "ok"));
                        }
                        let one = Reply::new(250, Enhanced(2, 0, 0), "ok").to_bytes().len();
                        assert_eq!(s.output().len() - before, one * tx.rcpts.len());
                    }
                    Some(Event::MessageDiscarded(tx, r)) => {
                        check_tx(&tx.rcpts, &mut last_tx_id, round);
                        let all = r.to_bytes().repeat(tx.rcpts.len());
                        assert!(s.output().ends_with(&all));
                    }
                    Some(_) => {}
                }
            }
            assert!(s.input.len() - s.pos <= MAX_COMMAND_LINE, "round {round}");
            let out = s.take_output();
            assert!(out.is_empty() || out.ends_with(b"\r\n"));
            match c {
                Some(c) => s.receive(c),
                None => s.eof(),
            }
            assert!(s.input.len() <= c.map_or(0, |c| c.len()) + MAX_COMMAND_LINE);
        }
        assert!(matches!(s.poll(), Some(Event::Close)) || s.is_closed());
    }
}

/// Accepted recipients of a transaction: non-empty, in order, never seen before.
fn check_tx(rcpts: &[u64], last: &mut Option<u64>, round: usize) {
    assert!(!rcpts.is_empty(), "round {round}");
    for &r in rcpts {
        assert!(last.is_none_or(|l| r > l), "round {round}");
        *last = Some(r);
    }
}

// ----- STARTTLS (RFC 3207) -----

fn tls_cfg(required: bool) -> SessionConfig {
    SessionConfig {
        starttls: true,
        tls_required: required,
        ..SessionConfig::default()
    }
}

#[test]
fn rfc3207_starttls_is_advertised_only_when_offered() {
    let t = run_cfg(&tls_cfg(false), b"LHLO c\r\n", &verdict, &outcome);
    assert!(t.out.contains("250 STARTTLS\r\n"), "{}", t.out);
    assert_eq!(
        lhlo(""),
        format!("{GREETING}{LHLO_REPLY}"),
        "not offered by default"
    );
    let t = run_cfg(
        &SessionConfig::default(),
        b"STARTTLS\r\n",
        &verdict,
        &outcome,
    );
    assert!(
        t.out
            .ends_with("502 5.5.1 Error: command not implemented\r\n"),
        "{}",
        t.out
    );
}

#[test]
fn rfc3207_4_starttls_answers_220_and_asks_the_driver_to_handshake() {
    let t = run_cfg(
        &tls_cfg(false),
        b"LHLO c\r\nSTARTTLS\r\n",
        &verdict,
        &outcome,
    );
    assert!(
        t.out.ends_with("220 2.0.0 Ready to start TLS\r\n"),
        "{}",
        t.out
    );
    assert!(String::from_utf8_lossy(&t.log).contains("[starttls]"));
}

#[test]
fn rfc3207_4_2_commands_pipelined_after_starttls_are_dropped_not_executed() {
    // CVE-2011-0411: plaintext injected after STARTTLS must not run inside the TLS session.
    let mut s: Session<String> = Session::new(tls_cfg(false));
    s.receive(b"LHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<x@y>\r\n");
    let mut started = false;
    while let Some(ev) = s.poll() {
        if matches!(ev, Event::StartTls) {
            started = true;
        }
    }
    assert!(started);
    let out = String::from_utf8(s.take_output()).unwrap();
    assert!(out.ends_with("220 2.0.0 Ready to start TLS\r\n"), "{out}");
    assert!(!out.contains("2.1.0"), "the injected MAIL ran: {out}");
    // After the handshake the session starts over: LHLO first, no MAIL from before.
    s.receive(b"MAIL FROM:<a@b>\r\n");
    while s.poll().is_some() {}
    let out = String::from_utf8(s.take_output()).unwrap();
    assert!(out.starts_with("503 5.5.1"), "LHLO is needed again: {out}");
    s.receive(b"LHLO c\r\n");
    while s.poll().is_some() {}
    let out = String::from_utf8(s.take_output()).unwrap();
    assert!(!out.contains("STARTTLS"), "not offered twice: {out}");
    s.receive(b"STARTTLS\r\n");
    while s.poll().is_some() {}
    let out = String::from_utf8(s.take_output()).unwrap();
    assert!(
        out.starts_with("503 5.5.1 Error: TLS already active"),
        "{out}"
    );
}

#[test]
fn rfc3207_4_starttls_takes_no_arguments_and_not_inside_a_transaction() {
    let t = run_cfg(
        &tls_cfg(false),
        b"LHLO c\r\nSTARTTLS now\r\nMAIL FROM:<a@b>\r\nSTARTTLS\r\nRSET\r\n",
        &verdict,
        &outcome,
    );
    assert!(
        t.out.contains("501 5.5.4 Syntax: STARTTLS\r\n"),
        "{}",
        t.out
    );
    assert!(
        t.out
            .contains("503 5.5.1 Error: STARTTLS inside a transaction"),
        "{}",
        t.out
    );
    assert!(!String::from_utf8_lossy(&t.log).contains("[starttls]"));
}

#[test]
fn rfc3207_4_tls_required_refuses_mail_before_starttls_with_530() {
    let t = run_cfg(
        &tls_cfg(true),
        b"LHLO c\r\nMAIL FROM:<a@b>\r\n",
        &verdict,
        &outcome,
    );
    assert!(
        t.out
            .ends_with("530 5.7.0 Must issue a STARTTLS command first\r\n"),
        "{}",
        t.out
    );
    let mut s: Session<String> = Session::new(tls_cfg(true));
    s.receive(b"LHLO c\r\nSTARTTLS\r\n");
    while s.poll().is_some() {}
    s.take_output();
    s.receive(b"LHLO c\r\nMAIL FROM:<a@b>\r\n");
    while s.poll().is_some() {}
    let out = String::from_utf8(s.take_output()).unwrap();
    assert!(
        out.ends_with("250 2.1.0 Ok\r\n") || out.contains("\r\n250 2.1.0"),
        "{out}"
    );
}

// ----- XFORWARD (Postfix's XFORWARD_README) -----

fn xf_cfg() -> SessionConfig {
    SessionConfig {
        xforward: true,
        ..SessionConfig::default()
    }
}

#[test]
fn xforward_is_advertised_only_to_allowed_clients_and_refused_otherwise() {
    let t = run_cfg(&xf_cfg(), b"LHLO c\r\n", &verdict, &outcome);
    assert!(
        t.out
            .contains("250 XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE\r\n"),
        "{}",
        t.out
    );
    let t = run_cfg(
        &SessionConfig::default(),
        b"LHLO c\r\nXFORWARD NAME=x\r\n",
        &verdict,
        &outcome,
    );
    assert!(!t.out.contains("XFORWARD"), "{}", t.out);
    assert!(
        t.out
            .ends_with("502 5.5.1 Error: command not implemented\r\n"),
        "{}",
        t.out
    );
}

#[test]
fn xforward_attributes_reach_the_transaction_and_are_reset_after_it() {
    let script = b"LHLO c\r\nXFORWARD NAME=mx.example.net ADDR=192.0.2.1\r\n\
        XFORWARD IDENT=4B1A2C3D PROTO=ESMTP HELO=[UNAVAILABLE] SOURCE=REMOTE PORT=25\r\n\
        MAIL FROM:<a@b>\r\nRCPT TO:<u@x>\r\nDATA\r\nhi\r\n.\r\n\
        MAIL FROM:<a@b>\r\nRCPT TO:<u@x>\r\nDATA\r\nagain\r\n.\r\n";
    let t = run_cfg(&xf_cfg(), script, &verdict, &outcome);
    assert_eq!(t.msgs.len(), 2);
    let x = &t.msgs[0].xforward;
    assert_eq!(x.ident.as_deref(), Some("4B1A2C3D"));
    assert_eq!(x.client().as_deref(), Some("mx.example.net[192.0.2.1]"));
    assert_eq!(x.helo, None, "[UNAVAILABLE]");
    assert_eq!(x.port.as_deref(), Some("25"));
    assert_eq!(
        t.msgs[1].xforward,
        Xforward::default(),
        "one transaction only"
    );
}

#[test]
fn xforward_syntax_rules() {
    let t = run_cfg(
        &xf_cfg(),
        b"LHLO c\r\nXFORWARD\r\nXFORWARD COLOR=red\r\nXFORWARD NAME\r\nXFORWARD NAME=a+2\r\n\
          MAIL FROM:<a@b>\r\nXFORWARD NAME=late\r\nRSET\r\n",
        &verdict,
        &outcome,
    );
    let codes: Vec<&str> = t
        .out
        .lines()
        .filter(|l| l.starts_with('5'))
        .map(|l| &l[..9])
        .collect();
    assert_eq!(
        codes,
        [
            "501 5.5.4",
            "501 5.5.4",
            "501 5.5.4",
            "501 5.5.4",
            "503 5.5.1"
        ],
        "{}",
        t.out
    );
    let long = format!("LHLO c\r\nXFORWARD NAME={}\r\n", "a".repeat(256));
    let t = run_cfg(&xf_cfg(), long.as_bytes(), &verdict, &outcome);
    assert!(
        t.out
            .ends_with("501 5.5.4 Bad XFORWARD attribute value\r\n"),
        "{}",
        t.out
    );
    let t = run_cfg(
        &xf_cfg(),
        b"LHLO c\r\nXFORWARD name=a+2Bb\r\n",
        &verdict,
        &outcome,
    );
    assert!(
        t.out.ends_with("250 2.0.0 Ok\r\n"),
        "names case-insensitive, xtext: {}",
        t.out
    );
}
