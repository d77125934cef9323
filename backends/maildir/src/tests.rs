//! Unit tests of the Maildir backend, one per rule (standards §6 and §10.10).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lmtpd_store::testing::{Modal, Under};
use lmtpd_store::{
    testing, Body, Delivery, DeliveryError, DetailMailbox, Enhanced, Envelope, Flags, MailStore,
    MemoryBody, Message, Quota, Recipient, Target,
};
use tempfile::TempDir;

use crate::{name, quota, sweep_tmp, MaildirConfig, MaildirStore};

const TRACE: &[u8] = b"Return-Path: <s@x.org>\nDelivered-To: alice@example.org\n";
const BODY: &[u8] = b"Subject: hi\n\nhello\n";

impl Under for MaildirStore {
    fn parts(&self) -> (&dyn MailStore, DetailMailbox) {
        (self, DetailMailbox::Yes)
    }
}

fn store_in(dir: &Path, mode: DetailMailbox) -> Modal<MaildirStore> {
    let st = MaildirStore::new(MaildirConfig {
        template: format!("{}/%d/%n", dir.display()),
        hostname: "mx.example.org".into(),
        quota_permfail: false,
    });
    Modal { st, mode }
}

fn store(dir: &Path) -> Modal<MaildirStore> {
    store_in(dir, DetailMailbox::Yes)
}

fn rcpt(local: &str) -> Recipient {
    Recipient::new(local, "example.org")
}

fn with_detail(local: &str, detail: &str) -> Recipient {
    Recipient {
        detail: Some(detail.into()),
        ..rcpt(local)
    }
}

fn with_quota(local: &str, bytes: Option<u64>, messages: Option<u64>) -> Recipient {
    Recipient {
        quota: Quota {
            bytes,
            messages,
            grace: 0,
        },
        ..rcpt(local)
    }
}

/// Delivers through the real path (`MailStore::deliver` and a reporter), every copy starting
/// with `trace`, each recipient's `+detail` turned into its target as the server does.
fn deliver_traced(
    st: &impl Under,
    body: &dyn Body,
    rcpts: &[Recipient],
    trace: &[u8],
) -> Vec<Result<(), DeliveryError>> {
    testing::deliver_recipients(st, &Envelope::default(), body, rcpts, |_| trace.to_vec())
}

fn deliver_body(
    st: &impl Under,
    body: &dyn Body,
    rcpts: &[Recipient],
) -> Vec<Result<(), DeliveryError>> {
    deliver_traced(st, body, rcpts, TRACE)
}

/// Copies without trace headers (exact sizes for the quota tests).
fn deliver_bare(
    st: &impl Under,
    body: &dyn Body,
    rcpts: &[Recipient],
) -> Vec<Result<(), DeliveryError>> {
    deliver_traced(st, body, rcpts, b"")
}

fn deliver(st: &impl Under, rcpts: &[Recipient]) -> Vec<Result<(), DeliveryError>> {
    deliver_body(st, &MemoryBody(BODY.to_vec()), rcpts)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn mailbox(dir: &TempDir, local: &str) -> PathBuf {
    dir.path().join("example.org").join(local)
}

fn code(r: &Result<(), DeliveryError>) -> Option<(u16, Enhanced)> {
    r.as_ref().err().map(|e| (e.code, e.enhanced))
}

const LOCAL_ERROR: Option<(u16, Enhanced)> = Some((451, Enhanced(4, 3, 0)));
const OVER_QUOTA: Option<(u16, Enhanced)> = Some((452, Enhanced(4, 2, 2)));

/// Checks the §10.10 name shape `^\d+\.[^.]+\..+,S=\d+` by hand.
fn matches_name_pattern(name: &str) -> bool {
    let Some((secs, rest)) = name.split_once('.') else {
        return false;
    };
    let Some((id, rest)) = rest.split_once('.') else {
        return false;
    };
    let Some(s_at) = rest.rfind(",S=") else {
        return false;
    };
    !secs.is_empty()
        && secs.bytes().all(|b| b.is_ascii_digit())
        && !id.is_empty()
        && s_at > 0
        && rest[s_at + 3..]
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit())
}

fn field(name: &str, key: &str) -> u64 {
    let start = name.find(key).unwrap() + key.len();
    let digits: String = name[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().unwrap()
}

#[test]
fn stores_exact_bytes_trace_then_body() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let res = deliver(&st, &[rcpt("alice")]);
    assert!(res[0].is_ok(), "{res:?}");
    let new = mailbox(&dir, "alice").join("new");
    let files = names(&new);
    assert_eq!(files.len(), 1);
    let stored = fs::read(new.join(&files[0])).unwrap();
    assert_eq!(stored, [TRACE, BODY].concat());
}

#[test]
fn delivered_file_is_in_new_only_and_tmp_is_empty() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let mb = mailbox(&dir, "alice");
    assert_eq!(names(&mb.join("new")).len(), 1);
    assert!(names(&mb.join("tmp")).is_empty());
    assert!(names(&mb.join("cur")).is_empty());
    assert!(
        !mb.join("maildirsize").exists(),
        "unlimited quota touches no maildirsize"
    );
}

#[test]
fn name_matches_pattern_and_size_fields_are_correct() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let new = mailbox(&dir, "alice").join("new");
    let name = names(&new).remove(0);
    assert!(matches_name_pattern(&name), "{name}");
    assert!(!name.contains(':') && !name.contains('/') && !name.starts_with('.'));
    let len = fs::metadata(new.join(&name)).unwrap().len();
    let lines = [TRACE, BODY]
        .concat()
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64;
    assert_eq!(field(&name, ",S="), len);
    assert_eq!(field(&name, ",W="), len + lines);
    // <sec>.M<usec>P<pid>Q<n>R<8 hex>.<host>
    let id = name.split('.').nth(1).unwrap();
    assert!(id.starts_with('M'), "{id}");
    assert!(id.contains(&format!("P{}Q", std::process::id())), "{id}");
    let random = &id[id.find('R').unwrap() + 1..];
    assert_eq!(random.len(), 8);
    assert!(random.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(name.contains(".mx.example.org,S="), "{name}");
}

#[test]
fn stored_files_are_private() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let mb = mailbox(&dir, "alice");
    for d in [&mb, &mb.join("tmp"), &mb.join("new"), &mb.join("cur")] {
        let mode = fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", d.display());
    }
    let file = mb.join("new").join(names(&mb.join("new")).remove(0));
    assert_eq!(fs::metadata(file).unwrap().permissions().mode() & 0o077, 0);
}

#[test]
fn fifty_deliveries_get_fifty_distinct_names() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    for _ in 0..50 {
        assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    }
    let files = names(&mailbox(&dir, "alice").join("new"));
    assert_eq!(files.len(), 50);
    let bases: HashSet<&str> = files
        .iter()
        .map(|n| n.split(",S=").next().unwrap())
        .collect();
    assert_eq!(bases.len(), 50);
}

#[test]
fn unique_names_differ_within_one_microsecond() {
    let a = name::unique("h");
    let b = name::unique("h");
    assert_ne!(a, b);
}

#[test]
fn host_name_is_escaped() {
    assert_eq!(name::escape_host("a/b:c,d"), "a\\057b\\072c\\054d");
    assert_eq!(name::escape_host("x\ny"), "x\\012y");
    assert_eq!(name::escape_host(""), "localhost");
    let dir = TempDir::new().unwrap();
    let st = MaildirStore::new(MaildirConfig {
        template: format!("{}/%n", dir.path().display()),
        hostname: "bad/host:name,x".into(),
        quota_permfail: false,
    });
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let name = names(&dir.path().join("alice").join("new")).remove(0);
    assert!(name.contains(".bad\\057host\\072name\\054x,S="), "{name}");
    assert!(matches_name_pattern(&name), "{name}");
}

#[test]
fn template_expands_user_local_domain_and_percent() {
    let st = MaildirStore::new(MaildirConfig {
        template: "/m/%d/%n/%u/100%%".into(),
        hostname: "h".into(),
        quota_permfail: false,
    });
    assert_eq!(
        st.maildir_path(&rcpt("alice")).unwrap(),
        PathBuf::from("/m/example.org/alice/alice@example.org/100%")
    );
    let rel = MaildirConfig {
        template: "./run/mail/%d/%n".into(),
        ..st.config().clone()
    };
    assert_eq!(
        MaildirStore::new(rel).maildir_path(&rcpt("bob")).unwrap(),
        PathBuf::from("./run/mail/example.org/bob")
    );
}

#[test]
fn unknown_template_escape_is_refused() {
    for template in ["/m/%x", "/m/%"] {
        let cfg = MaildirConfig {
            template: template.into(),
            hostname: "h".into(),
            quota_permfail: false,
        };
        assert!(cfg.validate().is_err(), "{template}");
        let st = MaildirStore::new(cfg);
        let err = st.maildir_path(&rcpt("alice")).unwrap_err();
        assert_eq!((err.code, err.enhanced), (451, Enhanced(4, 3, 0)));
        assert!(err.source.is_some());
    }
}

#[test]
fn unsafe_template_values_are_refused() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    for bad in ["", "..", ".hidden", "a/b", "a\0b", "a\nb", "a\x7fb"] {
        let r = rcpt(bad);
        let err = st.maildir_path(&r).unwrap_err();
        assert_eq!(
            (err.code, err.enhanced),
            (451, Enhanced(4, 3, 0)),
            "{bad:?}"
        );
        assert!(err.source.is_some(), "{bad:?}");
        assert_eq!(
            code(&deliver(&st, std::slice::from_ref(&r))[0]),
            LOCAL_ERROR,
            "{bad:?}"
        );
        assert_eq!(st.check(&r).map_err(|e| e.code), Err(451), "{bad:?}");
    }
    let bad_domain = Recipient {
        domain: "..".into(),
        ..rcpt("alice")
    };
    assert_eq!(code(&deliver(&st, &[bad_domain])[0]), LOCAL_ERROR);
    // Nothing was created anywhere.
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[test]
fn symlinked_maildir_root_is_refused_and_target_untouched() {
    let dir = TempDir::new().unwrap();
    let target = dir.path().join("elsewhere");
    fs::create_dir(&target).unwrap();
    fs::create_dir(dir.path().join("example.org")).unwrap();
    symlink(&target, mailbox(&dir, "alice")).unwrap();
    let st = store(dir.path());
    let res = deliver(&st, &[rcpt("alice")]);
    assert_eq!(code(&res[0]), LOCAL_ERROR);
    assert!(names(&target).is_empty());
    assert_eq!(st.check(&rcpt("alice")).map_err(|e| e.code), Err(451));
}

#[test]
fn symlinked_tmp_or_new_is_refused() {
    for sub in ["tmp", "new"] {
        let dir = TempDir::new().unwrap();
        let target = dir.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        let mb = mailbox(&dir, "alice");
        fs::create_dir_all(&mb).unwrap();
        symlink(&target, mb.join(sub)).unwrap();
        let res = deliver(&store(dir.path()), &[rcpt("alice")]);
        assert_eq!(code(&res[0]), LOCAL_ERROR, "{sub}");
        assert!(names(&target).is_empty(), "{sub}");
    }
}

#[test]
fn maildir_root_that_is_a_file_is_refused() {
    let dir = TempDir::new().unwrap();
    fs::create_dir(dir.path().join("example.org")).unwrap();
    fs::write(mailbox(&dir, "alice"), b"not a maildir").unwrap();
    let res = deliver(&store(dir.path()), &[rcpt("alice")]);
    assert_eq!(code(&res[0]), LOCAL_ERROR);
    assert_eq!(fs::read(mailbox(&dir, "alice")).unwrap(), b"not a maildir");
}

#[test]
fn failing_recipient_does_not_change_other_outcome() {
    let dir = TempDir::new().unwrap();
    fs::create_dir(dir.path().join("example.org")).unwrap();
    fs::write(mailbox(&dir, "broken"), b"file").unwrap();
    let st = store(dir.path());
    let res = deliver(
        &st,
        &[rcpt("alice"), rcpt("broken"), rcpt("bob"), rcpt("..")],
    );
    assert!(res[0].is_ok());
    assert_eq!(code(&res[1]), LOCAL_ERROR);
    assert!(res[2].is_ok());
    assert_eq!(code(&res[3]), LOCAL_ERROR);
    assert_eq!(names(&mailbox(&dir, "alice").join("new")).len(), 1);
    assert_eq!(names(&mailbox(&dir, "bob").join("new")).len(), 1);
}

#[test]
fn concurrent_deliveries_from_four_threads_produce_100_files() {
    let dir = TempDir::new().unwrap();
    let st = Arc::new(store(dir.path()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let st = Arc::clone(&st);
            std::thread::spawn(move || {
                for _ in 0..25 {
                    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mb = mailbox(&dir, "alice");
    let files = names(&mb.join("new"));
    assert_eq!(files.len(), 100);
    assert_eq!(files.iter().collect::<HashSet<_>>().len(), 100);
    assert!(names(&mb.join("tmp")).is_empty());
    for f in &files {
        assert_eq!(
            fs::read(mb.join("new").join(f)).unwrap(),
            [TRACE, BODY].concat()
        );
    }
}

/// A body whose reader fails after `fail_after` bytes.
struct FailingBody {
    data: Vec<u8>,
    fail_after: usize,
}

struct FailingReader<'a> {
    data: &'a [u8],
    pos: usize,
    fail_after: usize,
}

impl Read for FailingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.fail_after {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        let n = buf
            .len()
            .min(self.fail_after - self.pos)
            .min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Body for FailingBody {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
    fn open(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(FailingReader {
            data: &self.data,
            pos: 0,
            fail_after: self.fail_after,
        }))
    }
    fn lines(&self) -> u64 {
        self.data.iter().filter(|&&b| b == b'\n').count() as u64
    }
}

#[test]
fn injected_read_failure_leaves_no_file_in_tmp_or_new() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let body = FailingBody {
        data: vec![b'x'; 200_000],
        fail_after: 100_000,
    };
    let res = deliver_body(&st, &body, &[rcpt("alice"), rcpt("bob")]);
    for r in &res {
        assert_eq!(code(r), LOCAL_ERROR);
        assert!(r.as_ref().unwrap_err().source.is_some());
    }
    for who in ["alice", "bob"] {
        let mb = mailbox(&dir, who);
        assert!(names(&mb.join("tmp")).is_empty(), "{who}");
        assert!(names(&mb.join("new")).is_empty(), "{who}");
    }
}

/// A body that reports a length different from what it yields.
struct LyingBody(Vec<u8>);

impl Body for LyingBody {
    fn len(&self) -> u64 {
        self.0.len() as u64 + 10
    }
    fn open(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(&self.0[..]))
    }
    fn lines(&self) -> u64 {
        0
    }
}

#[test]
fn short_copy_is_refused_and_leaves_nothing() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let res = deliver_body(&st, &LyingBody(BODY.to_vec()), &[rcpt("alice")]);
    assert_eq!(code(&res[0]), LOCAL_ERROR);
    let mb = mailbox(&dir, "alice");
    assert!(names(&mb.join("tmp")).is_empty());
    assert!(names(&mb.join("new")).is_empty());
}

#[test]
fn large_message_is_streamed_intact() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    assert!(deliver_body(&st, &MemoryBody(body.clone()), &[rcpt("alice")])[0].is_ok());
    let new = mailbox(&dir, "alice").join("new");
    let name = names(&new).remove(0);
    let stored = fs::read(new.join(&name)).unwrap();
    assert_eq!(stored, [TRACE, &body].concat());
    assert_eq!(field(&name, ",S="), stored.len() as u64);
}

// ---- +detail folders --------------------------------------------------------------------

#[test]
fn detail_no_delivers_to_inbox() {
    let dir = TempDir::new().unwrap();
    let st = store_in(dir.path(), DetailMailbox::No);
    let mb = mailbox(&dir, "alice");
    fs::create_dir_all(mb.join(".lists").join("new")).unwrap();
    assert!(deliver(&st, &[with_detail("alice", "lists")])[0].is_ok());
    assert_eq!(names(&mb.join("new")).len(), 1);
    assert!(names(&mb.join(".lists").join("new")).is_empty());
}

#[test]
fn detail_yes_uses_existing_folder_else_inbox() {
    let dir = TempDir::new().unwrap();
    let st = store_in(dir.path(), DetailMailbox::Yes);
    let mb = mailbox(&dir, "alice");
    assert!(deliver(&st, &[with_detail("alice", "missing")])[0].is_ok());
    assert_eq!(names(&mb.join("new")).len(), 1);
    assert!(!mb.join(".missing").exists());
    fs::create_dir(mb.join(".lists")).unwrap();
    assert!(deliver(&st, &[with_detail("alice", "lists")])[0].is_ok());
    assert_eq!(names(&mb.join(".lists").join("new")).len(), 1);
    assert!(names(&mb.join(".lists").join("tmp")).is_empty());
    assert_eq!(names(&mb.join("new")).len(), 1);
}

#[test]
fn detail_create_makes_folder_with_maildirfolder() {
    let dir = TempDir::new().unwrap();
    let st = store_in(dir.path(), DetailMailbox::Create);
    assert!(deliver(&st, &[with_detail("alice", "lists.rust")])[0].is_ok());
    let folder = mailbox(&dir, "alice").join(".lists.rust");
    assert_eq!(names(&folder.join("new")).len(), 1);
    assert!(folder.join("cur").is_dir() && folder.join("tmp").is_dir());
    let marker = fs::metadata(folder.join("maildirfolder")).unwrap();
    assert!(marker.is_file() && marker.len() == 0);
    let mode = fs::metadata(&folder).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0);
    assert!(names(&mailbox(&dir, "alice").join("new")).is_empty());
}

#[test]
fn detail_folder_differing_in_case_is_reused() {
    let dir = TempDir::new().unwrap();
    let st = store_in(dir.path(), DetailMailbox::Create);
    assert!(deliver(&st, &[with_detail("alice", "Lists")])[0].is_ok());
    assert!(deliver(&st, &[with_detail("alice", "lists")])[0].is_ok());
    assert!(deliver(&st, &[with_detail("alice", "LISTS")])[0].is_ok());
    let mb = mailbox(&dir, "alice");
    let folders: Vec<String> = names(&mb)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert_eq!(folders, vec![".Lists".to_string()]);
    assert_eq!(names(&mb.join(".Lists").join("new")).len(), 3);
    // Yes mode reuses it as well.
    let yes = store_in(dir.path(), DetailMailbox::Yes);
    assert!(deliver(&yes, &[with_detail("alice", "lIsTs")])[0].is_ok());
    assert_eq!(names(&mb.join(".Lists").join("new")).len(), 4);
}

#[test]
fn unsafe_detail_goes_to_inbox() {
    let dir = TempDir::new().unwrap();
    let st = store_in(dir.path(), DetailMailbox::Create);
    for bad in ["", ".x", "a..b", "a/b", "a\nb", "x."] {
        assert!(
            deliver(&st, &[with_detail("alice", bad)])[0].is_ok(),
            "{bad:?}"
        );
    }
    let mb = mailbox(&dir, "alice");
    assert_eq!(names(&mb.join("new")).len(), 6);
    let folders: Vec<String> = names(&mb)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(folders.is_empty(), "{folders:?}");
}

#[test]
fn symlinked_folder_is_refused() {
    let dir = TempDir::new().unwrap();
    let target = dir.path().join("elsewhere");
    fs::create_dir(&target).unwrap();
    let mb = mailbox(&dir, "alice");
    fs::create_dir_all(&mb).unwrap();
    symlink(&target, mb.join(".lists")).unwrap();
    let res = deliver(&store(dir.path()), &[with_detail("alice", "lists")]);
    assert_eq!(code(&res[0]), LOCAL_ERROR);
    assert!(names(&target).is_empty());
}

// ---- quota ------------------------------------------------------------------------------

fn write_maildirsize(mb: &Path, text: &str) {
    fs::create_dir_all(mb).unwrap();
    fs::write(mb.join("maildirsize"), text).unwrap();
}

fn message_of(len: usize) -> MemoryBody {
    MemoryBody(vec![b'x'; len])
}

fn bare(local: &str, bytes: Option<u64>, messages: Option<u64>) -> Recipient {
    with_quota(local, bytes, messages)
}

#[test]
fn quota_refuses_message_that_would_exceed_and_stores_nothing() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let mb = mailbox(&dir, "alice");
    write_maildirsize(&mb, "1000S\n990 1\n");
    let res = deliver_bare(&st, &message_of(20), &[bare("alice", Some(1000), None)]);
    assert_eq!(code(&res[0]), OVER_QUOTA);
    assert!(names(&mb.join("new")).is_empty());
    assert!(names(&mb.join("tmp")).is_empty());
    assert_eq!(
        fs::read_to_string(mb.join("maildirsize")).unwrap(),
        "1000S\n990 1\n"
    );
}

#[test]
fn quota_accepts_small_message_and_appends_size_line() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let mb = mailbox(&dir, "alice");
    write_maildirsize(&mb, "1000S\n990 1\n");
    let res = deliver_bare(&st, &message_of(5), &[bare("alice", Some(1000), None)]);
    assert!(res[0].is_ok(), "{res:?}");
    assert_eq!(names(&mb.join("new")).len(), 1);
    assert_eq!(
        fs::read_to_string(mb.join("maildirsize")).unwrap(),
        "1000S\n990 1\n5 1\n"
    );
}

#[test]
fn quota_permfail_gives_552() {
    let dir = TempDir::new().unwrap();
    let st = MaildirStore::new(MaildirConfig {
        quota_permfail: true,
        ..store(dir.path()).config().clone()
    });
    write_maildirsize(&mailbox(&dir, "alice"), "1000S\n990 1\n");
    let res = deliver_bare(&st, &message_of(20), &[bare("alice", Some(1000), None)]);
    assert_eq!(code(&res[0]), Some((552, Enhanced(5, 2, 2))));
}

#[test]
fn message_count_quota_is_enforced() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let r = bare("alice", None, Some(2));
    assert!(deliver_bare(&st, &message_of(5), std::slice::from_ref(&r))[0].is_ok());
    assert!(deliver_bare(&st, &message_of(5), std::slice::from_ref(&r))[0].is_ok());
    let mb = mailbox(&dir, "alice");
    assert_eq!(
        fs::read_to_string(mb.join("maildirsize")).unwrap(),
        "2C\n0 0\n5 1\n5 1\n"
    );
    assert_eq!(
        code(&deliver_bare(&st, &message_of(5), std::slice::from_ref(&r))[0]),
        OVER_QUOTA
    );
    assert_eq!(names(&mb.join("new")).len(), 2);
    // Over quota with several usage lines: recounted before refusing (standards §6.6).
    assert_eq!(
        fs::read_to_string(mb.join("maildirsize")).unwrap(),
        "2C\n10 2\n"
    );
    assert!(st.check(&r).is_err());
}

#[test]
fn check_refuses_when_already_full() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let mb = mailbox(&dir, "alice");
    write_maildirsize(&mb, "1000S,100C\n1000 1\n");
    let err = st
        .check(&with_quota("alice", Some(1000), Some(100)))
        .unwrap_err();
    assert_eq!((err.code, err.enhanced), (452, Enhanced(4, 2, 2)));
    write_maildirsize(&mb, "1000S,100C\n990 1\n");
    assert!(st
        .check(&with_quota("alice", Some(1000), Some(100)))
        .is_ok());
}

#[test]
fn check_does_not_create_anything() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    assert!(st.check(&rcpt("alice")).is_ok());
    assert!(st.check(&with_quota("alice", Some(1000), None)).is_ok());
    assert!(names(dir.path()).is_empty());
}

#[test]
fn unlimited_quota_never_touches_maildirsize() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let mb = mailbox(&dir, "alice");
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert!(!mb.join("maildirsize").exists());
    write_maildirsize(&mb, "10S\n999 9\n");
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert!(st.check(&rcpt("alice")).is_ok());
    assert_eq!(
        fs::read_to_string(mb.join("maildirsize")).unwrap(),
        "10S\n999 9\n"
    );
}

/// A maildir with 3 counted messages (100 + 200 with `,S=`, 7 bytes without) plus one in
/// `.Trash` and a dovecot file that must be ignored.
fn populate(mb: &Path) {
    for sub in [
        "new",
        "cur",
        "tmp",
        ".Trash/cur",
        ".Lists/new",
        ".Lists/cur",
    ] {
        fs::create_dir_all(mb.join(sub)).unwrap();
    }
    fs::write(mb.join("new/1.a.h,S=100,W=104"), b"x").unwrap();
    fs::write(mb.join("cur/2.b.h,S=200:2,S"), b"y").unwrap();
    fs::write(mb.join(".Lists/new/3.c.h"), b"1234567").unwrap();
    fs::write(mb.join(".Trash/cur/4.d.h,S=5000:2,ST"), b"z").unwrap();
    fs::write(mb.join("dovecot-uidlist"), b"3 V1 N5\n").unwrap();
}

#[test]
fn missing_maildirsize_is_recalculated_without_trash() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let mb = mailbox(&dir, "alice");
    populate(&mb);
    assert!(st
        .check(&with_quota("alice", Some(10_000), Some(50)))
        .is_ok());
    assert_eq!(
        fs::read_to_string(mb.join("maildirsize")).unwrap(),
        "10000S,50C\n307 3\n"
    );
    assert!(names(&mb.join("tmp")).is_empty());
    assert_eq!(fs::read(mb.join("dovecot-uidlist")).unwrap(), b"3 V1 N5\n");
}

#[test]
fn large_maildirsize_is_recalculated_keeping_definition() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let mb = mailbox(&dir, "alice");
    populate(&mb);
    let mut text = String::from("10000S\n");
    while text.len() < 5120 {
        text.push_str("1 1\n");
    }
    write_maildirsize(&mb, &text);
    let res = deliver_bare(&st, &message_of(10), &[bare("alice", Some(10_000), None)]);
    assert!(res[0].is_ok(), "{res:?}");
    assert_eq!(
        fs::read_to_string(mb.join("maildirsize")).unwrap(),
        "10000S\n307 3\n10 1\n"
    );
}

#[test]
fn changed_quota_definition_is_recalculated() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let mb = mailbox(&dir, "alice");
    populate(&mb);
    write_maildirsize(&mb, "5S\n99999 99\n");
    assert!(st.check(&with_quota("alice", Some(1000), None)).is_ok());
    assert_eq!(
        fs::read_to_string(mb.join("maildirsize")).unwrap(),
        "1000S\n307 3\n"
    );
}

#[test]
fn stale_over_quota_file_with_several_lines_is_recalculated() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let mb = mailbox(&dir, "alice");
    populate(&mb);
    // Says full, but the mailbox was emptied since (negative lines missing): recalculated.
    write_maildirsize(&mb, "1000S\n900 2\n100 1\n");
    assert!(st.check(&with_quota("alice", Some(1000), None)).is_ok());
    assert_eq!(
        fs::read_to_string(mb.join("maildirsize")).unwrap(),
        "1000S\n307 3\n"
    );
}

#[test]
fn size_is_read_from_name() {
    assert_eq!(quota::size_from_name("1.a.h,S=123,W=130:2,S"), Some(123));
    assert_eq!(quota::size_from_name("1.a.h,S=45"), Some(45));
    assert_eq!(quota::size_from_name("1.a.h:2,S"), None);
    assert_eq!(
        quota::definition(&Quota {
            bytes: Some(1024),
            messages: Some(100),
            grace: 0,
        }),
        "1024S,100C"
    );
    assert_eq!(
        quota::definition(&Quota {
            bytes: Some(1024),
            messages: None,
            grace: 0,
        }),
        "1024S"
    );
}

// ---- tmp/ sweeping ----------------------------------------------------------------------

fn age_file(path: &Path, age: Duration) {
    let f = File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn sweep_tmp_removes_only_old_entries() {
    let dir = TempDir::new().unwrap();
    let tmp = dir.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    for n in ["old", "fresh", "dovecot.old"] {
        fs::write(tmp.join(n), b"x").unwrap();
    }
    fs::create_dir(tmp.join("olddir")).unwrap();
    age_file(&tmp.join("old"), Duration::from_secs(37 * 3600));
    age_file(&tmp.join("dovecot.old"), Duration::from_secs(37 * 3600));
    assert_eq!(
        sweep_tmp(dir.path(), Duration::from_secs(36 * 3600)).unwrap(),
        1
    );
    assert_eq!(names(&tmp), vec!["dovecot.old", "fresh", "olddir"]);
    assert_eq!(
        sweep_tmp(&dir.path().join("nowhere"), Duration::ZERO).unwrap(),
        0
    );
}

#[test]
fn sweep_tmp_refuses_symlinked_tmp() {
    let dir = TempDir::new().unwrap();
    let target = dir.path().join("elsewhere");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("old"), b"x").unwrap();
    age_file(&target.join("old"), Duration::from_secs(37 * 3600));
    let md = dir.path().join("md");
    fs::create_dir(&md).unwrap();
    symlink(&target, md.join("tmp")).unwrap();
    assert!(sweep_tmp(&md, Duration::from_secs(36 * 3600)).is_err());
    assert!(target.join("old").exists());
}

#[test]
fn stale_tmp_files_are_swept_on_first_touch() {
    let dir = TempDir::new().unwrap();
    let mb = mailbox(&dir, "alice");
    fs::create_dir_all(mb.join("tmp")).unwrap();
    fs::write(mb.join("tmp/stale"), b"x").unwrap();
    age_file(&mb.join("tmp/stale"), Duration::from_secs(40 * 3600));
    let st = store(dir.path());
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert!(names(&mb.join("tmp")).is_empty());
    // Only the first touch sweeps.
    fs::write(mb.join("tmp/stale2"), b"x").unwrap();
    age_file(&mb.join("tmp/stale2"), Duration::from_secs(40 * 3600));
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert_eq!(names(&mb.join("tmp")), vec!["stale2"]);
}

#[test]
fn parallel_copies_report_every_recipient_once_with_its_own_outcome() {
    let dir = TempDir::new().unwrap();
    let target = dir.path().join("elsewhere");
    fs::create_dir(&target).unwrap();
    fs::create_dir(dir.path().join("example.org")).unwrap();
    symlink(&target, mailbox(&dir, "mallory")).unwrap();
    let st = store(dir.path());
    let list: Vec<Recipient> = ["a", "b", "mallory", "c", "d", "e", "a"]
        .iter()
        .map(|l| rcpt(l))
        .collect();
    let seen: Vec<Option<(u16, Enhanced)>> = deliver(&st, &list).iter().map(code).collect();
    let want: Vec<Option<(u16, Enhanced)>> = (0..list.len())
        .map(|i| if i == 2 { LOCAL_ERROR } else { None })
        .collect();
    assert_eq!(seen, want, "in RCPT order, only mallory failed");
    for (who, n) in [("a", 2), ("b", 1), ("c", 1), ("d", 1), ("e", 1)] {
        assert_eq!(names(&mailbox(&dir, who).join("new")).len(), n, "{who}");
        assert!(
            names(&mailbox(&dir, who).join("tmp")).is_empty(),
            "{who} tmp/"
        );
    }
    assert!(names(&target).is_empty());
}

#[test]
fn a_copy_with_flags_goes_to_cur_with_its_info_letters() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let r = rcpt("alice");
    let env = Envelope::default();
    let body = MemoryBody(BODY.to_vec());
    let flags = Flags::of(&[lmtpd_store::Flag::Seen, lmtpd_store::Flag::Answered]);
    let d = Delivery::new(&r, TRACE.to_vec(), vec![Target::inbox().with_flags(flags)]);
    assert!(testing::deliver(&*st, &Message::new(&env, &body), &[d])[0].is_ok());
    let mb = mailbox(&dir, "alice");
    assert!(names(&mb.join("new")).is_empty());
    let cur = names(&mb.join("cur"));
    assert_eq!(cur.len(), 1);
    assert!(cur[0].ends_with(":2,RS"), "{}", cur[0]);
    assert_eq!(
        fs::read(mb.join("cur").join(&cur[0])).unwrap(),
        [TRACE, BODY].concat()
    );
}

// ---- the store contract suite --------------------------------------------------------------

/// The contract suite's view of a Maildir store under a temporary directory.
struct Harness {
    dir: TempDir,
    st: MaildirStore,
}

fn harness() -> Harness {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path()).st;
    Harness { dir, st }
}

impl testing::Harness for Harness {
    fn store(&self) -> &dyn MailStore {
        &self.st
    }

    fn read(&self, r: &Recipient, folder: Option<&str>) -> Vec<testing::Visible> {
        let root = mailbox(&self.dir, &r.local);
        let md = match folder {
            None => root,
            Some(name) => root.join(format!(".{name}")),
        };
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            for name in names(&md.join(sub)) {
                let info = name.split_once(":2,").map_or("", |(_, i)| i);
                let mut flags = Flags::NONE;
                for f in lmtpd_store::Flag::ALL {
                    if info.contains(f.maildir_letter()) {
                        flags.insert(f);
                    }
                }
                out.push(testing::Visible {
                    bytes: fs::read(md.join(sub).join(&name)).unwrap(),
                    flags: flags.imap_list(),
                });
            }
        }
        out
    }

    fn break_mailbox(&self, r: &Recipient) {
        // The maildir path is a regular file: nothing can be stored there.
        let path = mailbox(&self.dir, &r.local);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"not a maildir").unwrap();
    }
}

lmtpd_store::contract_suite!(harness);

/// The same contract through `tmp/`, the path of systems without `O_TMPFILE`.
mod through_tmp {
    use super::*;

    fn harness() -> Harness {
        let dir = TempDir::new().unwrap();
        let st = store(dir.path()).st.through_tmp();
        Harness { dir, st }
    }

    lmtpd_store::contract_suite!(harness);
}

/// Linux: a copy is an `O_TMPFILE` file named in `new/` once durable; nothing ever appears in
/// `tmp/`, and the file is 0600 with one link.
#[cfg(target_os = "linux")]
#[test]
fn on_linux_a_copy_never_passes_through_tmp_and_has_one_link() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    for _ in 0..3 {
        assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    }
    let mb = mailbox(&dir, "alice");
    assert!(names(&mb.join("tmp")).is_empty());
    let new = names(&mb.join("new"));
    assert_eq!(new.len(), 3);
    for n in new {
        let meta = fs::metadata(mb.join("new").join(&n)).unwrap();
        assert_eq!(meta.nlink(), 1, "{n}");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{n}");
        assert_eq!(
            fs::read(mb.join("new").join(&n)).unwrap(),
            [TRACE, BODY].concat()
        );
    }
    assert!(
        st.st.unnamed.load(std::sync::atomic::Ordering::Relaxed),
        "this filesystem takes O_TMPFILE"
    );
}

/// Through `tmp/` the copy is linked into `new/` and its `tmp/` name removed.
#[test]
fn through_tmp_a_copy_leaves_nothing_in_tmp() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path()).st.through_tmp();
    let st = Modal {
        st,
        mode: DetailMailbox::Yes,
    };
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let mb = mailbox(&dir, "alice");
    assert!(names(&mb.join("tmp")).is_empty());
    assert_eq!(
        fs::read(mb.join("new").join(names(&mb.join("new")).remove(0))).unwrap(),
        [TRACE, BODY].concat()
    );
}

/// The files of `dir` with their sizes.
fn sizes(dir: &Path) -> Vec<(PathBuf, u64)> {
    names(dir)
        .into_iter()
        .map(|n| {
            let p = dir.join(n);
            let len = fs::metadata(&p).unwrap().len();
            (p, len)
        })
        .collect()
}

#[test]
fn usage_follows_maildirsize_and_recalc_recounts_after_a_message_is_removed_by_hand() {
    let tmp = TempDir::new().unwrap();
    let st = store(tmp.path());
    let a = with_quota("alice", Some(1 << 20), None);
    for _ in 0..3 {
        assert!(deliver(&st, std::slice::from_ref(&a))[0].is_ok());
    }
    let root = mailbox(&tmp, "alice");
    // A mail reader moves the copies to cur/ with a flag, as it does once they are seen.
    for (p, _) in sizes(&root.join("new")) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        fs::rename(&p, root.join("cur").join(format!("{name}:2,S"))).unwrap();
    }
    let files = sizes(&root.join("cur"));
    let total: u64 = files.iter().map(|(_, n)| n).sum();
    assert_eq!(files.len(), 3);
    let three = lmtpd_store::Usage {
        bytes: total,
        messages: 3,
    };
    assert_eq!(st.usage(&a).unwrap(), Some(three));

    // Removed by hand: maildirsize still counts it (the cheap figure is stale)...
    fs::remove_file(&files[1].0).unwrap();
    assert_eq!(st.usage(&a).unwrap(), Some(three));
    // ...until recalc recounts the messages and rewrites the file.
    let two = lmtpd_store::Usage {
        bytes: total - files[1].1,
        messages: 2,
    };
    assert_eq!(st.recalc(&a).unwrap(), Some(two));
    assert_eq!(
        fs::read_to_string(root.join(quota::FILE)).unwrap(),
        format!("1048576S\n{} 2\n", two.bytes)
    );
    assert_eq!(st.usage(&a).unwrap(), Some(two));
    // A later delivery adds to the recounted figure.
    assert!(deliver(&st, std::slice::from_ref(&a))[0].is_ok());
    let after = st.usage(&a).unwrap().unwrap();
    assert_eq!(after.messages, 3);
    assert_eq!(after.bytes, two.bytes + files[1].1);
}

#[test]
fn without_a_quota_usage_counts_the_messages_and_recalc_writes_no_maildirsize() {
    let tmp = TempDir::new().unwrap();
    let st = store(tmp.path());
    let b = rcpt("bob");
    assert_eq!(
        st.usage(&b).unwrap(),
        Some(lmtpd_store::Usage::default()),
        "no maildir yet"
    );
    for _ in 0..2 {
        assert!(deliver(&st, std::slice::from_ref(&b))[0].is_ok());
    }
    let root = mailbox(&tmp, "bob");
    let files = sizes(&root.join("new"));
    fs::remove_file(&files[0].0).unwrap();
    let one = lmtpd_store::Usage {
        bytes: files[1].1,
        messages: 1,
    };
    assert_eq!(st.usage(&b).unwrap(), Some(one), "counted, not cached");
    assert_eq!(st.recalc(&b).unwrap(), Some(one));
    assert!(!root.join(quota::FILE).exists());
}

#[test]
fn usage_of_a_limited_maildir_without_maildirsize_recounts_and_writes_it() {
    let tmp = TempDir::new().unwrap();
    let st = store(tmp.path());
    let plain = rcpt("carol");
    assert!(deliver(&st, std::slice::from_ref(&plain))[0].is_ok());
    let root = mailbox(&tmp, "carol");
    assert!(!root.join(quota::FILE).exists());
    let size = sizes(&root.join("new"))[0].1;
    let limited = with_quota("carol", None, Some(10));
    let one = lmtpd_store::Usage {
        bytes: size,
        messages: 1,
    };
    assert_eq!(st.usage(&limited).unwrap(), Some(one));
    assert_eq!(
        fs::read_to_string(root.join(quota::FILE)).unwrap(),
        format!("10C\n{size} 1\n")
    );
}
