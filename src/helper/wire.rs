//! The account helper's messages, sans-IO: one delivery request (the account, its store,
//! the envelope, the targets and the trace prefix; the body travels as a descriptor beside
//! it) and one outcome; or one script request (the account's active Sieve script or a
//! script it includes) and the script's source. Each is a length-prefixed frame of
//! `key value` lines.
//!
//! Nothing in a request is a path: the helper computes the mailbox from its own templates
//! and the account's home, so a request naming a path has nothing to name it with. Every
//! field is bounded, and a frame that is too large, malformed or of another version is
//! refused as a whole.

use std::sync::Arc;

use lmtpd_store::{DeliveryError, Enhanced, Flag, Flags, Folder, HeaderEdit, Quota, Target};

/// The first line of every delivery request.
const MAGIC: &str = "lmtpd-helper 1";

/// The first line of every script request.
const SCRIPT_MAGIC: &str = "lmtpd-helper-script 1";

/// The largest frame either side accepts (the trace prefix and header edits included).
pub const MAX_FRAME: usize = 1 << 20;

/// Most targets one request may name.
pub const MAX_TARGETS: usize = 64;

/// Which store of the account receives the copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountStore {
    /// `account_maildir`.
    Maildir,
    /// `account_mbox`.
    Mbox,
}

impl AccountStore {
    fn name(self) -> &'static str {
        match self {
            AccountStore::Maildir => "maildir",
            AccountStore::Mbox => "mbox",
        }
    }
}

/// One delivery to one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The login name; the helper looks it up again and applies the same rules.
    pub account: String,
    /// The recipient's domain (`%d` is not used in account templates; for the log).
    pub domain: String,
    /// The recipient address as the client sent it (for the log).
    pub address: String,
    /// The `+detail`, if any.
    pub detail: Option<String>,
    /// Which of the account's stores.
    pub store: AccountStore,
    /// Quota from the users file.
    pub quota: Quota,
    /// The envelope sender, `None` for `<>`.
    pub sender: Option<String>,
    /// The transaction id (Maildir names, mbox `From_` lines, logs).
    pub id: String,
    /// SMTPUTF8 was given.
    pub smtputf8: bool,
    /// 8BITMIME was given.
    pub eight_bit: bool,
    /// Length of the spooled body in bytes.
    pub body_len: u64,
    /// Number of LF line ends in the body.
    pub body_lines: u64,
    /// Where the copies go (at least one).
    pub targets: Vec<Target>,
    /// Trace headers that start each copy.
    pub trace: Vec<u8>,
}

/// Why a frame was refused.
pub type WireError = String;

fn flag_letters(flags: Flags) -> String {
    let s: String = flags.iter().map(Flag::maildir_letter).collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

fn parse_flags(s: &str) -> Result<Flags, WireError> {
    let mut flags = Flags::NONE;
    if s == "-" {
        return Ok(flags);
    }
    for c in s.chars() {
        let f = Flag::ALL
            .into_iter()
            .find(|f| f.maildir_letter() == c)
            .ok_or_else(|| format!("unknown flag letter {c:?}"))?;
        flags.insert(f);
    }
    Ok(flags)
}

/// A value must fit on one line of the frame.
fn one_line(what: &str, v: &str) -> Result<(), WireError> {
    if v.contains(['\n', '\r', '\0']) || v.len() > 4096 {
        return Err(format!("{what} cannot be sent to the helper"));
    }
    Ok(())
}

impl Request {
    /// The frame: a 4-byte big-endian length, then the lines and the binary parts.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        use std::fmt::Write as _;
        for (what, v) in [
            ("account", self.account.as_str()),
            ("domain", &self.domain),
            ("address", &self.address),
            ("id", &self.id),
            ("sender", self.sender.as_deref().unwrap_or("")),
            ("detail", self.detail.as_deref().unwrap_or("")),
        ] {
            one_line(what, v)?;
        }
        if self.targets.is_empty() || self.targets.len() > MAX_TARGETS {
            return Err("a request names 1 to 64 targets".into());
        }
        let mut head = String::new();
        let _ = writeln!(head, "{MAGIC}");
        let _ = writeln!(head, "account {}", self.account);
        let _ = writeln!(head, "domain {}", self.domain);
        let _ = writeln!(head, "address {}", self.address);
        if let Some(d) = &self.detail {
            let _ = writeln!(head, "detail {d}");
        }
        let _ = writeln!(head, "store {}", self.store.name());
        if let Some(b) = self.quota.bytes {
            let _ = writeln!(head, "quota_bytes {b}");
        }
        if let Some(m) = self.quota.messages {
            let _ = writeln!(head, "quota_messages {m}");
        }
        if self.quota.grace > 0 {
            let _ = writeln!(head, "quota_grace {}", self.quota.grace);
        }
        if let Some(s) = &self.sender {
            let _ = writeln!(head, "sender {s}");
        }
        let _ = writeln!(head, "id {}", self.id);
        let _ = writeln!(head, "smtputf8 {}", u8::from(self.smtputf8));
        let _ = writeln!(head, "eight_bit {}", u8::from(self.eight_bit));
        let _ = writeln!(head, "body {} {}", self.body_len, self.body_lines);
        let mut tail: Vec<u8> = self.trace.clone();
        for t in &self.targets {
            let (edit_len, replaces, lines) = match &t.edit {
                Some(e) => {
                    tail.extend_from_slice(&e.header);
                    (e.header.len(), e.replaces, e.replaces_lines)
                }
                None => (0, 0, 0),
            };
            let flags = flag_letters(t.flags);
            match &t.folder {
                Folder::Inbox => {
                    let _ = writeln!(head, "target inbox 0 {flags} {edit_len} {replaces} {lines}");
                }
                Folder::Named { name, create } => {
                    one_line("folder", name)?;
                    let _ = writeln!(
                        head,
                        "target folder {} {flags} {edit_len} {replaces} {lines} {name}",
                        u8::from(*create)
                    );
                }
            }
        }
        let _ = writeln!(head, "trace {}", self.trace.len());
        head.push('\n');
        let len = head.len() + tail.len();
        if len > MAX_FRAME {
            return Err("request too large".into());
        }
        let mut payload = head.into_bytes();
        payload.extend_from_slice(&tail);
        Ok(framed(&payload))
    }

    /// Parses a frame's payload (without its length prefix).
    pub fn decode(payload: &[u8]) -> Result<Request, WireError> {
        let end = payload
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or("no end of header")?;
        let head = std::str::from_utf8(&payload[..end]).map_err(|_| "header is not UTF-8")?;
        let mut binary = &payload[end + 2..];
        let mut lines = head.lines();
        if lines.next() != Some(MAGIC) {
            return Err("not an lmtpd-helper 1 request".into());
        }
        let mut r = Request {
            account: String::new(),
            domain: String::new(),
            address: String::new(),
            detail: None,
            store: AccountStore::Mbox,
            quota: Quota::default(),
            sender: None,
            id: String::new(),
            smtputf8: false,
            eight_bit: false,
            body_len: 0,
            body_lines: 0,
            targets: Vec::new(),
            trace: Vec::new(),
        };
        let mut store = None;
        let mut trace_len = None;
        // (target, edit length) in order; the edits follow the trace in the binary part.
        let mut targets: Vec<(Target, usize)> = Vec::new();
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("'{v}' is not a number"))
        };
        for line in lines {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "account" => r.account = v.into(),
                "domain" => r.domain = v.into(),
                "address" => r.address = v.into(),
                "detail" => r.detail = Some(v.into()),
                "store" => {
                    store = Some(match v {
                        "maildir" => AccountStore::Maildir,
                        "mbox" => AccountStore::Mbox,
                        _ => return Err(format!("unknown store '{v}'")),
                    })
                }
                "quota_bytes" => r.quota.bytes = Some(num(v)?),
                "quota_messages" => r.quota.messages = Some(num(v)?),
                "quota_grace" => r.quota.grace = num(v)?,
                "sender" => r.sender = Some(v.into()),
                "id" => r.id = v.into(),
                "smtputf8" => r.smtputf8 = v == "1",
                "eight_bit" => r.eight_bit = v == "1",
                "body" => {
                    let (a, b) = v.split_once(' ').ok_or("body needs length and lines")?;
                    r.body_len = num(a)?;
                    r.body_lines = num(b)?;
                }
                "target" => {
                    if targets.len() >= MAX_TARGETS {
                        return Err("too many targets".into());
                    }
                    let mut f = v.splitn(7, ' ');
                    let mut field = || f.next().ok_or("short target line");
                    let kind = field()?;
                    let create = field()? == "1";
                    let flags = parse_flags(field()?)?;
                    let edit_len = usize::try_from(num(field()?)?).map_err(|_| "edit length")?;
                    let replaces = num(field()?)?;
                    let replaces_lines = num(field()?)?;
                    let folder = match kind {
                        "inbox" => Folder::Inbox,
                        "folder" => Folder::Named {
                            name: field()?.to_string(),
                            create,
                        },
                        _ => return Err(format!("unknown target kind '{kind}'")),
                    };
                    let mut t = Target {
                        folder,
                        flags,
                        edit: None,
                    };
                    if edit_len > 0 {
                        // Filled in below, once the trace has been taken off.
                        t.edit = Some(Arc::new(HeaderEdit {
                            header: Vec::new(),
                            replaces,
                            replaces_lines,
                        }));
                    }
                    targets.push((t, edit_len));
                }
                "trace" => trace_len = Some(usize::try_from(num(v)?).map_err(|_| "trace length")?),
                _ => return Err(format!("unknown field '{k}'")),
            }
        }
        r.store = store.ok_or("no store")?;
        if r.account.is_empty() || r.id.is_empty() {
            return Err("account and id are required".into());
        }
        if targets.is_empty() {
            return Err("no target".into());
        }
        let trace_len = trace_len.ok_or("no trace length")?;
        if trace_len > binary.len() {
            return Err("trace longer than the frame".into());
        }
        r.trace = binary[..trace_len].to_vec();
        binary = &binary[trace_len..];
        for (mut t, edit_len) in targets {
            if let Some(e) = &mut t.edit {
                if edit_len > binary.len() {
                    return Err("header edit longer than the frame".into());
                }
                Arc::make_mut(e).header = binary[..edit_len].to_vec();
                binary = &binary[edit_len..];
            }
            r.targets.push(t);
        }
        if !binary.is_empty() {
            return Err("trailing bytes after the request".into());
        }
        Ok(r)
    }
}

/// Which of an account's Sieve scripts a [`ScriptRequest`] asks for. Neither is a path: the
/// helper finds the file from its own `account_sieve` / `account_sieve_dir` templates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptWanted {
    /// The active script (`account_sieve`, Dovecot's `~/.dovecot.sieve`).
    Active,
    /// `include :personal "NAME"`: `NAME.sieve` in `account_sieve_dir`.
    Include(String),
}

/// A request for one of an account's Sieve scripts, read by the helper as the account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptRequest {
    /// The login name; the helper looks it up again and applies the same rules.
    pub account: String,
    /// The recipient's domain (must be a local domain).
    pub domain: String,
    /// Which script.
    pub wanted: ScriptWanted,
}

/// The script frame's answer: what the helper found, as [`crate::scripts::Source`] says it.
pub type ScriptReply = crate::scripts::Source;

/// Most bytes of script source a reply may carry (beside its header lines).
pub const MAX_SCRIPT: usize = MAX_FRAME - 8192;

/// `payload` behind its 4-byte big-endian length: one frame of either side.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

/// Whether a frame's payload is a script request (rather than a delivery request).
pub fn is_script_request(payload: &[u8]) -> bool {
    payload
        .strip_prefix(SCRIPT_MAGIC.as_bytes())
        .is_some_and(|rest| rest.starts_with(b"\n"))
}

impl ScriptRequest {
    /// The frame: a 4-byte big-endian length, then the lines.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        one_line("account", &self.account)?;
        one_line("domain", &self.domain)?;
        let wanted = match &self.wanted {
            ScriptWanted::Active => "active".to_string(),
            ScriptWanted::Include(name) => {
                one_line("include name", name)?;
                format!("include {name}")
            }
        };
        let text = format!(
            "{SCRIPT_MAGIC}\naccount {}\ndomain {}\nscript {wanted}\n\n",
            self.account, self.domain
        );
        Ok(framed(text.as_bytes()))
    }

    /// Parses a frame's payload (without its length prefix); every field exactly once.
    pub fn decode(payload: &[u8]) -> Result<ScriptRequest, WireError> {
        let text = std::str::from_utf8(payload).map_err(|_| "request is not UTF-8")?;
        let head = text.strip_suffix("\n\n").ok_or("no end of request")?;
        let mut lines = head.split('\n');
        if lines.next() != Some(SCRIPT_MAGIC) {
            return Err("not an lmtpd-helper-script 1 request".into());
        }
        let (mut account, mut domain, mut wanted) = (None, None, None);
        for line in lines {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            let slot = match k {
                "account" => &mut account,
                "domain" => &mut domain,
                "script" => &mut wanted,
                _ => return Err(format!("unknown field '{k}'")),
            };
            if slot.replace(v.to_string()).is_some() {
                return Err(format!("field '{k}' given twice"));
            }
        }
        let wanted = match wanted.as_deref().ok_or("no script field")? {
            "active" => ScriptWanted::Active,
            w => match w.strip_prefix("include ") {
                Some(name) if !name.is_empty() => ScriptWanted::Include(name.to_string()),
                _ => return Err(format!("unknown script '{w}'")),
            },
        };
        let account = account.filter(|a| !a.is_empty()).ok_or("no account")?;
        Ok(ScriptRequest {
            account,
            domain: domain.ok_or("no domain")?,
            wanted,
        })
    }
}

/// The reply frame to a script request: `missing`; `script DEV INO LEN MTIME MTIME_NS CTIME
/// CTIME_NS` with the path on the next line and the source after an empty line; or
/// `failed read|refused` with the path and the reason on the next two lines.
pub fn encode_script_reply(reply: &ScriptReply) -> Vec<u8> {
    use crate::scripts::{ScriptError, Source};
    let clean = |p: &std::path::Path| flat(&p.to_string_lossy());
    let payload: Vec<u8> = match reply {
        Source::Missing => b"missing\n".to_vec(),
        Source::Text(path, st, text) if text.len() <= MAX_SCRIPT => {
            let mut v = format!(
                "script {} {} {} {} {} {} {}\n{}\n\n",
                st.dev,
                st.ino,
                st.len,
                st.mtime.0,
                st.mtime.1,
                st.ctime.0,
                st.ctime.1,
                clean(path)
            )
            .into_bytes();
            v.extend_from_slice(text);
            v
        }
        Source::Text(path, _, _) => {
            format!("failed refused\n{}\ntoo large to send\n", clean(path)).into_bytes()
        }
        Source::Failed(path, err) => {
            // The helper only reads; a compile error cannot come from it, and would be sent
            // as what it is to lmtpd: a script that cannot run.
            let (kind, why) = match err {
                ScriptError::Refused(w) => ("refused", w.clone()),
                ScriptError::Read(w) => ("read", w.clone()),
                ScriptError::Compile(_) => ("read", err.to_string()),
            };
            format!("failed {kind}\n{}\n{}\n", clean(path), flat(&why)).into_bytes()
        }
    };
    framed(&payload)
}

/// `s` on one line of a frame: line breaks become spaces.
fn flat(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Parses a script reply's payload; `Err` for a malformed one.
pub fn decode_script_reply(payload: &[u8]) -> Result<ScriptReply, WireError> {
    use crate::scripts::{ScriptError, Source, Stamp};
    if payload == b"missing\n" {
        return Ok(Source::Missing);
    }
    if let Some(rest) = payload.strip_prefix(b"script ") {
        let end = rest
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or("no end of the script header")?;
        let head = std::str::from_utf8(&rest[..end]).map_err(|_| "header is not UTF-8")?;
        let (nums, path) = head.split_once('\n').ok_or("no path line")?;
        let n: Vec<i64> = nums
            .split(' ')
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| format!("'{v}' is not a number"))
            })
            .collect::<Result<_, _>>()?;
        let [dev, ino, len, ms, mns, cs, cns] = n[..] else {
            return Err("a script stamp has seven numbers".into());
        };
        let unsigned = |v: i64| u64::try_from(v).map_err(|_| format!("{v} is negative"));
        let stamp = Stamp {
            dev: unsigned(dev)?,
            ino: unsigned(ino)?,
            len: unsigned(len)?,
            mtime: (ms, mns),
            ctime: (cs, cns),
        };
        let text = rest[end + 2..].to_vec();
        if text.len() as u64 != stamp.len {
            return Err("the source is not as long as its file".into());
        }
        return Ok(Source::Text(path.into(), stamp, text));
    }
    let text = std::str::from_utf8(payload).map_err(|_| "reply is not UTF-8")?;
    let mut lines = text.lines();
    let kind = lines
        .next()
        .and_then(|l| l.strip_prefix("failed "))
        .ok_or("unknown reply")?;
    let path = lines.next().ok_or("no path line")?;
    let why = lines.next().unwrap_or("").to_string();
    let err = match kind {
        "read" => ScriptError::Read(why),
        "refused" => ScriptError::Refused(why),
        _ => return Err(format!("unknown failure '{kind}'")),
    };
    Ok(Source::Failed(path.into(), err))
}

/// The outcome frame: `ok`, or `err CODE X.Y.Z` with the client text and the log text on
/// the next two lines.
pub fn encode_outcome(outcome: &Result<(), DeliveryError>) -> Vec<u8> {
    let body = match outcome {
        Ok(()) => "ok\n".to_string(),
        Err(e) => format!(
            "err {} {}\n{}\n{}\n",
            e.code,
            e.enhanced,
            flat(&e.text),
            flat(e.source.as_deref().unwrap_or(""))
        ),
    };
    framed(body.as_bytes())
}

/// Parses an outcome frame's payload. A malformed one is itself an error outcome.
pub fn decode_outcome(payload: &[u8]) -> Result<(), DeliveryError> {
    let bad =
        || DeliveryError::local_error().with_source("malformed reply from the account helper");
    let text = std::str::from_utf8(payload).map_err(|_| bad())?;
    if text == "ok\n" {
        return Ok(());
    }
    let mut lines = text.lines();
    let head = lines.next().ok_or_else(bad)?;
    let mut words = head.split(' ');
    if words.next() != Some("err") {
        return Err(bad());
    }
    let code: u16 = words.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
    let enhanced = words.next().and_then(parse_enhanced).ok_or_else(bad)?;
    if !(400..600).contains(&code) || u16::from(enhanced.0) != code / 100 {
        return Err(bad());
    }
    let mut e = DeliveryError::new(code, enhanced, lines.next().unwrap_or(""));
    if let Some(src) = lines.next().filter(|s| !s.is_empty()) {
        e = e.with_source(src);
    }
    Err(e)
}

fn parse_enhanced(s: &str) -> Option<Enhanced> {
    let mut p = s.split('.');
    let e = Enhanced(
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
    );
    p.next().is_none().then_some(e)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            account: "alice".into(),
            domain: "host.example".into(),
            address: "Alice+lists@host.example".into(),
            detail: Some("lists".into()),
            store: AccountStore::Maildir,
            quota: Quota {
                bytes: Some(1000),
                messages: None,
                grace: 512,
            },
            sender: Some("bob@example.org".into()),
            id: "ABC-1".into(),
            smtputf8: true,
            eight_bit: false,
            body_len: 42,
            body_lines: 3,
            targets: vec![
                Target::inbox(),
                Target::folder("My Lists.rust", true)
                    .with_flags(Flags::of(&[Flag::Seen, Flag::Flagged]))
                    .with_edit(Arc::new(HeaderEdit {
                        header: b"Subject: x\n\n".to_vec(),
                        replaces: 20,
                        replaces_lines: 2,
                    })),
            ],
            trace: b"Return-Path: <bob@example.org>\n".to_vec(),
        }
    }

    #[test]
    fn a_request_round_trips() {
        let r = request();
        let frame = r.encode().unwrap();
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        assert_eq!(Request::decode(&frame[4..]).unwrap(), r);
        let text = String::from_utf8_lossy(&frame[4..]);
        assert!(
            text.contains("\nquota_bytes 1000\nquota_grace 512\n"),
            "{text}"
        );
        assert_eq!(Request::decode(&frame[4..]).unwrap().quota.grace, 512);
        let mut null = request();
        null.sender = None;
        null.detail = None;
        null.quota = Quota::default();
        let frame = null.encode().unwrap();
        assert!(!String::from_utf8_lossy(&frame[4..]).contains("quota"));
        assert_eq!(Request::decode(&frame[4..]).unwrap(), null);
        // Grace without a byte limit still travels (it only matters with one).
        let mut grace_only = request();
        grace_only.quota = Quota {
            bytes: None,
            messages: Some(3),
            grace: 7,
        };
        let frame = grace_only.encode().unwrap();
        assert_eq!(Request::decode(&frame[4..]).unwrap(), grace_only);
    }

    #[test]
    fn a_request_cannot_carry_a_path_or_a_newline() {
        let mut r = request();
        r.account = "alice\nstore mbox".into();
        assert!(r.encode().is_err());
        let mut r = request();
        r.targets = Vec::new();
        assert!(r.encode().is_err());
        // A forged frame with a path field is refused as a whole, not ignored.
        let forged = b"lmtpd-helper 1\naccount alice\npath /etc/passwd\nstore mbox\nid x\nbody 0 0\ntarget inbox 0 - 0 0 0\ntrace 0\n\n";
        assert!(Request::decode(forged)
            .unwrap_err()
            .contains("unknown field 'path'"));
    }

    #[test]
    fn malformed_requests_are_refused() {
        let good = request().encode().unwrap();
        let payload = &good[4..];
        for cut in [0, 10, payload.len() / 2, payload.len() - 1] {
            assert!(Request::decode(&payload[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = payload.to_vec();
        extra.push(b'x');
        assert!(Request::decode(&extra).is_err());
        assert!(Request::decode(b"lmtpd-helper 2\n\n").is_err());
    }

    #[test]
    fn a_script_request_round_trips_and_names_no_path() {
        for wanted in [
            ScriptWanted::Active,
            ScriptWanted::Include("spam filter".into()),
        ] {
            let r = ScriptRequest {
                account: "alice".into(),
                domain: "host.example".into(),
                wanted,
            };
            let frame = r.encode().unwrap();
            assert!(is_script_request(&frame[4..]));
            assert!(!is_script_request(&request().encode().unwrap()[4..]));
            assert_eq!(ScriptRequest::decode(&frame[4..]).unwrap(), r);
        }
        for forged in [
            &b"lmtpd-helper-script 1\naccount alice\ndomain h\nscript /etc/shadow\n\n"[..],
            b"lmtpd-helper-script 1\naccount alice\ndomain h\npath /etc/shadow\nscript active\n\n",
            b"lmtpd-helper-script 1\naccount alice\naccount root\ndomain h\nscript active\n\n",
            b"lmtpd-helper-script 1\ndomain h\nscript active\n\n",
            b"lmtpd-helper-script 1\naccount alice\ndomain h\nscript active\n",
        ] {
            assert!(ScriptRequest::decode(forged).is_err(), "{forged:?}");
        }
        let r = ScriptRequest {
            account: "alice".into(),
            domain: "h".into(),
            wanted: ScriptWanted::Include("a\nscript active".into()),
        };
        assert!(r.encode().is_err());
    }

    #[test]
    fn script_replies_round_trip_and_garbage_is_refused() {
        use crate::scripts::{ScriptError, Source, Stamp};
        let text = b"keep;\n\n# end\n\n\n".to_vec();
        let stamp = Stamp {
            dev: 2049,
            ino: 77,
            len: text.len() as u64,
            mtime: (1_700_000_000, 5),
            ctime: (1_700_000_001, -1),
        };
        for reply in [
            Source::Missing,
            Source::Text("/home/alice/sieve/main.sieve".into(), stamp, text.clone()),
            Source::Failed(
                "/home/alice/.dovecot.sieve".into(),
                ScriptError::Refused("the symlink leads to /etc/x".into()),
            ),
            Source::Failed(
                "/home/alice/.dovecot.sieve".into(),
                ScriptError::Read("Permission denied".into()),
            ),
        ] {
            let frame = encode_script_reply(&reply);
            assert_eq!(decode_script_reply(&frame[4..]).unwrap(), reply);
        }
        for junk in [
            &b"script 1 2 3\n/p\n\nabc"[..],
            b"script 1 2 99 0 0 0 0\n/p\n\nshort",
            b"script 1 2 -3 0 0 0 0\n/p\n\n",
            b"failed maybe\n/p\nwhy\n",
            b"failed compile\n/p\nwhy\n",
            b"hello\n",
        ] {
            assert!(decode_script_reply(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn outcomes_round_trip_and_garbage_is_a_local_error() {
        assert!(decode_outcome(&encode_outcome(&Ok(()))[4..]).is_ok());
        let e = DeliveryError::over_quota(false).with_source("maildirsize says full");
        let back = decode_outcome(&encode_outcome(&Err(e))[4..]).unwrap_err();
        assert_eq!((back.code, back.enhanced), (452, Enhanced(4, 2, 2)));
        assert_eq!(back.source.as_deref(), Some("maildirsize says full"));
        for junk in [
            &b"err 250 2.0.0\nx\n"[..],
            b"err 550 4.1.1\n",
            b"okay\n",
            b"\xff",
        ] {
            let e = decode_outcome(junk).unwrap_err();
            assert_eq!((e.code, e.enhanced), (451, Enhanced(4, 3, 0)), "{junk:?}");
        }
    }
}
