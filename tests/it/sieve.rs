//! The differential Sieve corpus (`tests/sieve/`) against the Pigeonhole recordings: every
//! case of `tests/sieve/cases.txt` runs through our engine (`lmtpd::sieve_tool::run_test`,
//! what `lmtpd sieve test` prints) and its normalised action list must equal
//! `tests/sieve/expected/<id>.txt`, recorded from Debian's `sieve-test` by
//! `tests/sieve/diff.py --record`, unless the case is listed in `tests/sieve/deviations.txt`
//! with the RFC reason. The normalisation is the one of `diff.py` (`normalise()`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lmtpd::sieve_tool::{run_test, TestArgs};

const DEFAULT_FROM: &str = "sender@example.org";
const DEFAULT_TO: &str = "rcpt@example.com";
/// 2026-01-01T00:00:00Z: `currentdate` cases only use comparisons true for any recent date.
const NOW: i64 = 1_767_225_600;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sieve")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The canonical sorted action list of one run (see `normalise()` in diff.py).
fn normalise(stdout: &str, stderr: &str) -> Vec<String> {
    if stderr.contains("failed to compile") {
        return vec!["compile-error".into()];
    }
    if stderr.contains("final result: failed") {
        return vec!["implicit-keep INBOX".into(), "runtime-error".into()];
    }
    let mut out: Vec<String> = Vec::new();
    let mut section: Option<&str> = None;
    let mut current: Option<(String, Vec<String>)> = None;
    let flush = |current: &mut Option<(String, Vec<String>)>, out: &mut Vec<String>| {
        if let Some((text, extra)) = current.take() {
            out.push(text + &extra.concat());
        }
    };
    // Inside a vacation's START MESSAGE .. END MESSAGE block: its reason so far.
    let mut reason: Option<Vec<String>> = None;
    for raw in stdout.lines() {
        let line = raw.trim_end();
        if let Some(r) = reason.as_mut() {
            if line == "END MESSAGE" {
                let text = reason_text(&r.join(" "));
                reason = None;
                if let Some((_, extra)) = current.as_mut() {
                    extra.push(format!(" reason={text}"));
                }
            } else {
                r.push(line.to_string());
            }
            continue;
        }
        if line == "START MESSAGE" {
            reason = Some(Vec::new());
            continue;
        }
        if !line.starts_with(' ')
            && line.ends_with(':')
            && line != "Performed actions:"
            && line != "Implicit keep:"
        {
            // Another section (`lmtpd sieve test`'s "Would send"): not an outcome.
            flush(&mut current, &mut out);
            section = None;
            continue;
        }
        if line == "Performed actions:" || line == "Implicit keep:" {
            flush(&mut current, &mut out);
            section = Some(if line.starts_with("Performed") {
                "performed"
            } else {
                "implicit"
            });
            continue;
        }
        let Some(sec) = section else { continue };
        if line.trim().is_empty() || line.trim() == "(none)" {
            continue;
        }
        if let Some(item) = line.strip_prefix(" * ") {
            flush(&mut current, &mut out);
            let text = if item.starts_with("send vacation message") {
                "vacation".to_string()
            } else if item.starts_with("track duplicate") {
                "track-duplicate".to_string()
            } else if let Some(folder) = item.strip_prefix("store message in folder: ") {
                let kind = if sec == "performed" {
                    "store"
                } else {
                    "implicit-keep"
                };
                format!("{kind} {folder}")
            } else if let Some(reason) = item
                .strip_prefix("reject message with reason: ")
                .or_else(|| item.strip_prefix("ereject message with reason: "))
            {
                format!("reject {}", reason_text(reason))
            } else {
                item.trim().to_string()
            };
            current = Some((text, Vec::new()));
            continue;
        }
        if let (Some((_, extra)), Some(detail)) =
            (current.as_mut(), line.trim().strip_prefix("=> "))
        {
            if let Some((key, value)) = detail.split_once(':') {
                extra.push(format!(" {}={}", key.trim(), value.trim()));
            }
            continue;
        }
        if let (Some((_, extra)), Some(detail)) = (current.as_mut(), line.trim().strip_prefix("+ "))
        {
            if detail == "create mailbox if it does not exist" {
                extra.insert(0, " create".into());
            } else if let Some(flags) = detail.strip_prefix("add IMAP flags: ") {
                let mut f: Vec<String> =
                    flags.split_whitespace().map(|f| f.to_lowercase()).collect();
                f.sort();
                f.dedup();
                extra.push(format!(" flags={}", f.join(",")));
            } else if detail != "preserve implicit keep" {
                extra.push(format!(" [{detail}]"));
            }
        }
    }
    flush(&mut current, &mut out);
    finish(out)
}

/// A reject reason compared loosely (see `reason_text()` in diff.py): sieve-test prints each
/// CR and LF as `?`, our render a space; runs of both and of white space become one space.
fn reason_text(reason: &str) -> String {
    reason
        .split(|c: char| c == '?' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sorts, and drops `discard` when a copy is stored anyway (Pigeonhole lists it, our
/// outcome only lists a discard that decides the result; RFC 5228 §4.4: discard only
/// cancels the implicit keep).
fn finish(mut out: Vec<String>) -> Vec<String> {
    if out
        .iter()
        .any(|l| l.starts_with("store ") || l.starts_with("implicit-keep "))
    {
        out.retain(|l| l != "discard");
    }
    out.sort();
    out
}

#[test]
fn sieve_corpus_matches_pigeonhole_recordings() {
    let dir = corpus();
    let folders = lines(&dir.join("folders.txt"));
    let deviations: HashMap<String, String> = lines(&dir.join("deviations.txt"))
        .into_iter()
        .map(|l| match l.split_once(' ') {
            Some((id, why)) => (id.to_string(), why.trim().to_string()),
            None => (l, String::new()),
        })
        .collect();
    let mut total = 0;
    let mut listed = 0;
    let mut mismatches = Vec::new();
    let mut stale = Vec::new();
    for case in lines(&dir.join("cases.txt")) {
        let f: Vec<&str> = case.split_whitespace().collect();
        let field = |i: usize| f.get(i).copied().filter(|v| *v != "-");
        let (Some(id), Some(script), Some(message)) = (field(0), field(1), field(2)) else {
            panic!("bad line in cases.txt: {case}");
        };
        total += 1;
        let args = TestArgs {
            script: dir.join("scripts").join(format!("{script}.sieve")),
            message: dir.join("messages").join(format!("{message}.eml")),
            from: field(3).unwrap_or(DEFAULT_FROM).to_string(),
            to: field(4).unwrap_or(DEFAULT_TO).to_string(),
            orcpt: field(5).map(str::to_string),
            global_dir: Some(dir.join("global")),
            folders: folders.clone(),
            now: Some(NOW),
            limits: Default::default(),
            redirect_from: Default::default(),
        };
        let report = std::panic::catch_unwind(|| run_test(&args));
        let ours = match report {
            Ok(r) => normalise(&r.stdout, &r.stderr),
            Err(_) => vec!["PANIC".to_string()],
        };
        let expected = finish(lines(&dir.join("expected").join(format!("{id}.txt"))));
        if ours == expected && deviations.contains_key(id) {
            stale.push(id.to_string());
        }
        if ours != expected {
            if deviations.contains_key(id) {
                listed += 1;
            } else {
                mismatches.push(format!(
                    "{id}: pigeonhole [{}] lmtpd [{}]",
                    expected.join("; "),
                    ours.join("; ")
                ));
            }
        }
    }
    if !stale.is_empty() {
        eprintln!(
            "listed in deviations.txt but the same as Pigeonhole now: {}",
            stale.join(", ")
        );
    }
    assert!(total >= 300, "the corpus has only {total} cases");
    assert!(
        mismatches.is_empty(),
        "{} of {total} corpus cases differ from Pigeonhole ({listed} listed deviations):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn corpus_normalisation_reads_sieve_test_output() {
    let out = "\nPerformed actions:\n\n * store message in folder: Junk\n        + create mailbox if it does not exist\n        + add IMAP flags: \\seen FooBar\n * store message in folder: B\n        + preserve implicit keep\n * discard\n * track duplicate\n\nImplicit keep:\n\n * store message in folder: INBOX\n\n";
    assert_eq!(
        normalise(out, "sieve-test: Info: final result: success\n"),
        vec![
            "implicit-keep INBOX",
            "store B",
            "store Junk create flags=\\seen,foobar",
            "track-duplicate"
        ]
    );
    let vacation = "\nPerformed actions:\n\n * redirect message to: <a@x.example>\n * send vacation message:\n    => seconds : 259200\n    => subject : Away\n    => handle  : h1\n\nSTART MESSAGE\nI am\naway\nEND MESSAGE\n\nImplicit keep:\n\n  (none)\n\nWould send (lmtpd sieve test sends nothing):\n\n * not an action\n";
    assert_eq!(
        normalise(vacation, ""),
        vec![
            "redirect message to: <a@x.example>",
            "vacation seconds=259200 subject=Away handle=h1 reason=I am away"
        ]
    );
    assert_eq!(
        normalise("", "x: line 1: error: unknown test 'foo'.\nsieve-test: Fatal: failed to compile sieve script\n"),
        vec!["compile-error"]
    );
    assert_eq!(
        normalise(
            "",
            "sieve-test: Info: final result: failed; resolved with successful implicit keep\n"
        ),
        vec!["implicit-keep INBOX", "runtime-error"]
    );
    let discard = "\nPerformed actions:\n\n * discard\n\nImplicit keep:\n\n  (none)\n\n";
    assert_eq!(normalise(discard, ""), vec!["discard"]);
    let reject = "\nPerformed actions:\n\n * reject message with reason: go away\n\nImplicit keep:\n\n  (none)\n\n";
    assert_eq!(normalise(reject, ""), vec!["reject go away"]);
}

#[test]
fn sieve_check_exit_status_follows_the_corpus_scripts() {
    let scripts = corpus().join("scripts");
    let limits = lmtpd::sieve::Limits::default();
    let good = [
        scripts.join("rw_mailinabox.sieve"),
        scripts.join("rw_roundcube.sieve"),
    ];
    assert_eq!(lmtpd::sieve_tool::check(&good, &limits), 0);
    let with_bad = [
        scripts.join("keep.sieve"),
        scripts.join("bad_unknown_test.sieve"),
    ];
    assert_eq!(lmtpd::sieve_tool::check(&with_bad, &limits), 1);
    let missing = [scripts.join("no-such-script.sieve")];
    assert_eq!(lmtpd::sieve_tool::check(&missing, &limits), 1);
}

#[test]
fn sieve_test_reports_compile_and_run_time_failures() {
    let dir = corpus();
    let args = |script: &str, message: &str| TestArgs {
        script: dir.join("scripts").join(format!("{script}.sieve")),
        message: dir.join("messages").join(format!("{message}.eml")),
        from: DEFAULT_FROM.into(),
        to: DEFAULT_TO.into(),
        now: Some(NOW),
        ..TestArgs::default()
    };
    let bad = run_test(&args("bad_unknown_test", "plain"));
    assert_eq!(bad.status, 1);
    assert!(bad.stdout.is_empty());
    assert!(
        bad.stderr.contains("bad_unknown_test.sieve:1:"),
        "{}",
        bad.stderr
    );
    let conflict = run_test(&args("reject_fileinto", "plain"));
    assert_eq!(conflict.status, 1);
    assert!(
        conflict.stderr.contains("final result: failed"),
        "{}",
        conflict.stderr
    );
    let ok = run_test(&args("fileinto", "plain"));
    assert_eq!(ok.status, 0);
    assert!(
        ok.stdout.contains(" * store message in folder: Work\n"),
        "{}",
        ok.stdout
    );
}
