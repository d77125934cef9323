//! The account helper's privileged side: the keeper (`lmtpd account-helper`, started as root
//! before lmtpd drops root) that starts the helper and starts it again when it dies, the
//! helper that forks one child per request, and that child, which checks the account and
//! its mailbox, becomes the account for good and only then writes the copy.
//!
//! Processes: the keeper is single-threaded and only forks and waits; the helper is a fork of
//! the keeper and only receives request sockets and forks; each request child serves one
//! request and exits. A request child already running keeps going when its helper dies, so
//! a copy that was being written is still reported.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lmtpd_store::{Delivery, DeliveryError, Envelope, MailStore, Message, Recipient};

use super::wire::{self, AccountStore, Request, ScriptRequest, ScriptWanted};
use crate::config::Config;
use crate::directory::AccountRules;
use crate::scripts::{ScriptError, Source};
use crate::sys::{self, Exit, Forked};

/// Most request children at once; one more waits for one to finish.
const MAX_CHILDREN: usize = 64;

/// How long a request child waits for its request, and how long the daemon waits for a reply
/// beyond the mbox lock timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What the helper knows, fixed when lmtpd starts (the account keys are restart-only).
#[derive(Clone, Debug)]
pub struct Settings {
    rules: AccountRules,
    maildir: String,
    mbox: String,
    mail_group: Option<u32>,
    hostname: String,
    quota_permfail: bool,
    locks: Vec<lmtpd_mbox::LockKind>,
    lock_timeout: Duration,
    /// `account_sieve` (empty: none) and `account_sieve_dir`.
    sieve: String,
    sieve_dir: String,
    /// `sieve_max_script_size`.
    max_script: usize,
}

impl Settings {
    /// The helper's settings from the configuration; `None` unless `accounts = passwd`.
    pub fn of(cfg: &Config) -> Option<Settings> {
        let a = &cfg.accounts;
        let mail_group = if a.mail_group.is_empty() {
            None
        } else {
            match sys::lookup_group(&a.mail_group) {
                Ok(Some(g)) => Some(g),
                Ok(None) => {
                    log::warn!(
                        "account_mail_group {} does not exist: mbox deliveries get no extra group",
                        a.mail_group
                    );
                    None
                }
                Err(e) => {
                    log::warn!("looking up group {}: {e}", a.mail_group);
                    None
                }
            }
        };
        Some(Settings {
            rules: AccountRules::of(cfg)?,
            maildir: a.maildir.clone(),
            mbox: a.mbox.clone(),
            mail_group,
            hostname: cfg.delivery.hostname.clone(),
            quota_permfail: cfg.delivery.quota_permfail,
            locks: cfg.mbox.locks.clone(),
            lock_timeout: cfg.mbox.lock_timeout,
            sieve: a.sieve.clone(),
            sieve_dir: a.sieve_dir.clone(),
            max_script: cfg.sieve.limits().max_script_size.min(wire::MAX_SCRIPT),
        })
    }
}

/// Reads one length-prefixed frame (at most [`wire::MAX_FRAME`] bytes) and the descriptors
/// sent with its first bytes.
pub fn read_frame(sock: &UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut len = [0u8; 4];
    let mut got = 0;
    let mut fds = Vec::new();
    while got < 4 {
        let (n, mut more) = sys::recv_with_fds(sock.as_fd(), &mut len[got..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        fds.append(&mut more);
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > wire::MAX_FRAME {
        return Err(io::Error::other("frame too large"));
    }
    let mut payload = vec![0u8; len];
    (&*sock).read_exact(&mut payload)?;
    Ok((payload, fds))
}

/// `lmtpd account-helper`: the keeper. Its standard input is the control socket from lmtpd,
/// which first sends the configuration; every helper the keeper starts is announced there by
/// one byte with the helper's socket attached.
pub fn keeper_main() -> ExitCode {
    let control = match io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(e) => {
            eprintln!("lmtpd account-helper: no control socket: {e}");
            return ExitCode::from(71);
        }
    };
    // Nothing forked from here may inherit the control socket: a request child, once it is
    // the account, could otherwise announce a helper socket of its own to lmtpd.
    if let Err(e) = sys::stdin_to_dev_null() {
        eprintln!("lmtpd account-helper: cannot detach standard input: {e}");
        return ExitCode::from(71);
    }
    let cfg = match read_frame(&control)
        .map_err(|e| e.to_string())
        .and_then(|(text, _)| String::from_utf8(text).map_err(|e| e.to_string()))
        .and_then(|text| {
            Config::parse(&text, "lmtpd").map_err(|e| {
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lmtpd account-helper: cannot read the configuration: {e}");
            return ExitCode::from(78);
        }
    };
    crate::logging::init(&cfg);
    sys::set_umask(0o077);
    if sys::euid() != 0 {
        log::error!("account helper: not running as root; system accounts get 451 4.3.0");
        return ExitCode::from(77);
    }
    let Some(settings) = Settings::of(&cfg) else {
        log::error!("account helper started without accounts = passwd");
        return ExitCode::from(78);
    };
    let mut starts: u32 = 0;
    loop {
        let (ours, theirs) = match UnixStream::pair() {
            Ok(p) => p,
            Err(e) => {
                log::error!("account helper: socketpair: {e}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Err(e) = sys::send_with_fds(control.as_fd(), b"H", &[theirs.as_fd()]) {
            // lmtpd is gone.
            log::debug!("account helper keeper: lmtpd is gone ({e})");
            return ExitCode::SUCCESS;
        }
        drop(theirs);
        let started = Instant::now();
        let pid = match sys::fork() {
            Ok(Forked::Child) => {
                drop(control);
                helper_loop(ours, &settings)
            }
            Ok(Forked::Parent(pid)) => pid,
            Err(e) => {
                log::error!("account helper: fork: {e}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        drop(ours);
        starts += 1;
        if starts == 1 {
            log::info!("account helper started (pid {pid})");
        } else {
            log::warn!("account helper started again (pid {pid}, start {starts})");
        }
        match sys::wait_child(Some(pid), true) {
            Ok(Some((_, Exit::Code(0)))) => {
                log::debug!("account helper: lmtpd closed its socket; keeper exits");
                return ExitCode::SUCCESS;
            }
            Ok(Some((_, how))) => log::error!("account helper (pid {pid}) ended: {how:?}"),
            Ok(None) => {}
            Err(e) => log::error!("account helper: waitpid: {e}"),
        }
        // A helper that dies at once is not restarted in a tight loop.
        if started.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// The helper: receives one request socket at a time and forks a child for it. Exits 0 when
/// lmtpd closes the socket.
fn helper_loop(sock: UnixStream, settings: &Settings) -> ! {
    let mut children = 0usize;
    loop {
        while let Ok(Some(_)) = sys::wait_child(None, false) {
            children = children.saturating_sub(1);
        }
        let mut byte = [0u8; 1];
        let (n, mut fds) = match sys::recv_with_fds(sock.as_fd(), &mut byte) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("account helper: receiving a request: {e}");
                sys::exit_now(1)
            }
        };
        if n == 0 {
            sys::exit_now(0);
        }
        if byte != *b"R" || fds.len() != 1 {
            log::warn!("account helper: refused a malformed request message");
            continue;
        }
        let Some(conn) = fds.pop() else { continue };
        while children >= MAX_CHILDREN {
            match sys::wait_child(None, true) {
                Ok(Some(_)) => children -= 1,
                _ => children = 0,
            }
        }
        match sys::fork() {
            Ok(Forked::Child) => {
                // The child keeps only its own request socket: the helper socket carries
                // every other delivery's requests and bodies.
                drop(sock);
                let code = serve_request(conn, settings);
                sys::exit_now(code)
            }
            Ok(Forked::Parent(_)) => children += 1,
            Err(e) => log::error!("account helper: fork: {e}"),
        }
    }
}

/// One request child: reads the request and the body descriptor, delivers, answers.
fn serve_request(conn: OwnedFd, settings: &Settings) -> i32 {
    let stream = UnixStream::from(conn);
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let (payload, mut fds) = match read_frame(&stream) {
        Ok(r) => r,
        Err(e) => {
            log::warn!("account helper: reading a request: {e}");
            return 1;
        }
    };
    if wire::is_script_request(&payload) {
        // A script request carries no descriptor; one that does is refused whole.
        let reply = match ScriptRequest::decode(&payload) {
            Ok(req) if fds.is_empty() => read_script(&req, settings),
            Ok(_) => script_refused("a script request with a descriptor"),
            Err(e) => script_refused(&format!("malformed script request: {e}")),
        };
        if let Source::Failed(path, e) = &reply {
            log::warn!("account helper: script {}: {e}", path.display());
        }
        return match (&stream).write_all(&wire::encode_script_reply(&reply)) {
            Ok(()) => 0,
            Err(e) => {
                log::warn!("account helper: the script reply could not be sent: {e}");
                1
            }
        };
    }
    let outcome = match (Request::decode(&payload), fds.pop()) {
        (Ok(req), Some(body)) if fds.is_empty() => deliver(&req, File::from(body), settings),
        (Ok(_), _) => Err(refused("a request without exactly one body descriptor")),
        (Err(e), _) => Err(refused(&format!("malformed request: {e}"))),
    };
    if let Err(e) = &outcome {
        if e.code == 550 && e.enhanced.1 == 1 {
            log::warn!(
                "account helper refused a request: {}",
                e.source.as_deref().unwrap_or("")
            );
        }
    }
    match (&stream).write_all(&wire::encode_outcome(&outcome)) {
        Ok(()) => 0,
        Err(e) => {
            log::warn!("account helper: the reply could not be sent: {e}");
            1
        }
    }
}

fn script_refused(why: &str) -> Source {
    Source::Failed(
        PathBuf::new(),
        ScriptError::Refused(format!("account helper: {why}")),
    )
}

/// Reads one of an account's Sieve scripts as the account: looks the account up again and
/// applies the same rules as for a delivery, computes the file from the `account_sieve`
/// templates (never from the request), becomes the account (its primary group only) and
/// reads the file with the rules of a personal script (a symlink only to a file in the
/// same directory, a regular file of at most `sieve_max_script_size` bytes).
fn read_script(req: &ScriptRequest, s: &Settings) -> Source {
    let account = match sys::lookup_user(&req.account) {
        Ok(Some(a)) if a.name == req.account => a,
        Ok(_) => return script_refused(&format!("no account {}", req.account)),
        Err(e) => {
            return Source::Failed(PathBuf::new(), ScriptError::Read(format!("getpwnam: {e}")))
        }
    };
    if let Some(why) = s.rules.refusal(&account) {
        return script_refused(&why);
    }
    if !s.rules.local_domains.contains(&req.domain) {
        return script_refused(&format!("{} is not a local domain", req.domain));
    }
    let path = match &req.wanted {
        ScriptWanted::Active if s.sieve.is_empty() => return Source::Missing,
        ScriptWanted::Active => account_path(&s.sieve, &account, &req.domain),
        ScriptWanted::Include(_) if s.sieve_dir.is_empty() => return Source::Missing,
        ScriptWanted::Include(name) => {
            account_path(&s.sieve_dir, &account, &req.domain).and_then(|dir| {
                crate::scripts::include_file(&dir, name)
                    .ok_or_else(|| format!("'{name}' cannot be a script name"))
            })
        }
    };
    let path = match path {
        Ok(p) => p,
        Err(why) => return script_refused(&why),
    };
    if let Err(e) = sys::become_account(account.uid, account.gid, &[account.gid]) {
        return Source::Failed(
            path,
            ScriptError::Read(format!("cannot become {}: {e}", account.name)),
        );
    }
    crate::scripts::read_source(&path, s.max_script)
}

/// `550 5.1.1` with the reason for the log: the helper does nothing for a request it
/// would not have been sent.
fn refused(why: &str) -> DeliveryError {
    DeliveryError::unknown_user().with_source(format!("account helper: {why}"))
}

/// Expands an account template: `~` is the home, `%n` the account name. The home comes
/// from the password database; a `%` in it is taken literally.
pub fn account_path(
    template: &str,
    account: &crate::sys::Account,
    domain: &str,
) -> Result<PathBuf, String> {
    let t = match template.strip_prefix('~') {
        Some(rest) => format!(
            "{}{rest}",
            account.home.to_string_lossy().replace('%', "%%")
        ),
        None => template.to_string(),
    };
    let rcpt = Recipient::new(&account.name, domain);
    let path = lmtpd_store::template::expand(&t, "account", &rcpt)?;
    if !path.is_absolute() {
        return Err(format!("{} is not absolute", path.display()));
    }
    Ok(path)
}

/// Checks, as root and before anything is written, that the mailbox at `path` is the
/// account's own: no symlink anywhere below the home (or at the mailbox), every existing
/// directory from the home down owned by the account, an existing mailbox owned by it, and a
/// file mailbox not hard-linked.
pub fn check_ownership(
    path: &Path,
    account: &crate::sys::Account,
    in_home: bool,
) -> Result<(), String> {
    let owned = |p: &Path, what: &str| -> Result<Option<std::fs::Metadata>, String> {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => {
                Err(format!("{what} {} is a symlink", p.display()))
            }
            Ok(m) if m.uid() != account.uid => Err(format!(
                "{what} {} belongs to uid {}, not {} ({})",
                p.display(),
                m.uid(),
                account.name,
                account.uid
            )),
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{what} {}: {e}", p.display())),
        }
    };
    if in_home {
        match owned(&account.home, "home")? {
            Some(m) if m.is_dir() => {}
            Some(_) => {
                return Err(format!(
                    "home {} is not a directory",
                    account.home.display()
                ))
            }
            None => return Err(format!("home {} does not exist", account.home.display())),
        }
        let rest = path
            .strip_prefix(&account.home)
            .map_err(|_| format!("{} is not below the home", path.display()))?;
        let mut at = account.home.clone();
        for part in rest.components() {
            at.push(part);
            if owned(&at, "path")?.is_none() {
                break;
            }
        }
    }
    if let Some(m) = owned(path, "mailbox")? {
        if m.is_file() && m.nlink() > 1 {
            return Err(format!(
                "mailbox {} has {} hard links",
                path.display(),
                m.nlink()
            ));
        }
    }
    Ok(())
}

/// Delivers one request as its account: looks the account up again and applies the same
/// rules as the directory, computes and checks the mailbox, becomes the account, writes.
fn deliver(req: &Request, body: File, s: &Settings) -> Result<(), DeliveryError> {
    let account = sys::lookup_user(&req.account)
        .map_err(|e| DeliveryError::local_error().with_source(format!("getpwnam: {e}")))?
        .ok_or_else(|| refused(&format!("no account {}", req.account)))?;
    if account.name != req.account {
        return Err(refused(&format!("{} is not a login name", req.account)));
    }
    if let Some(why) = s.rules.refusal(&account) {
        return Err(refused(&why));
    }
    if !s.rules.local_domains.contains(&req.domain) {
        return Err(refused(&format!("{} is not a local domain", req.domain)));
    }
    let template = match req.store {
        AccountStore::Maildir => &s.maildir,
        AccountStore::Mbox => &s.mbox,
    };
    let path = account_path(template, &account, &req.domain)
        .map_err(|e| DeliveryError::config_error().with_source(e))?;
    check_ownership(&path, &account, template.starts_with('~')).map_err(|why| {
        log::warn!("account helper: {} ({}): {why}", req.account, req.address);
        DeliveryError::mailbox_unusable().with_source(why)
    })?;
    // The mail group only for a spool outside the home (/var/mail): inside it the account
    // needs no group, and one it does not have could reach other users' 0660 mboxes through
    // a directory it swaps for a symlink after the checks above.
    let mut groups = vec![account.gid];
    if req.store == AccountStore::Mbox && !template.starts_with('~') {
        groups.extend(s.mail_group);
    }
    sys::become_account(account.uid, account.gid, &groups).map_err(|e| {
        DeliveryError::local_error().with_source(format!("cannot become {}: {e}", account.name))
    })?;
    let body = crate::spool::FileBody::new(body, req.body_len, req.body_lines)
        .map_err(|e| DeliveryError::local_error().with_source(e))?;
    let env = Envelope {
        sender: req.sender.clone(),
        smtputf8: req.smtputf8,
        eight_bit: req.eight_bit,
        id: req.id.clone(),
        ..Envelope::default()
    };
    let rcpt = Recipient {
        address: req.address.clone(),
        user: format!("{}@{}", account.name, req.domain),
        local: account.name.clone(),
        domain: req.domain.clone(),
        detail: req.detail.clone(),
        quota: req.quota,
        orcpt: None,
    };
    // The path is fixed here; `%` in it must not be expanded again by the store.
    let fixed = path.to_string_lossy().replace('%', "%%");
    let store: Box<dyn MailStore> = match req.store {
        AccountStore::Maildir => Box::new(lmtpd_maildir::MaildirStore::new(
            lmtpd_maildir::MaildirConfig {
                template: fixed,
                hostname: s.hostname.clone(),
                quota_permfail: s.quota_permfail,
            },
        )),
        AccountStore::Mbox => Box::new(lmtpd_mbox::MboxStore::new(lmtpd_mbox::MboxConfig {
            template: fixed,
            locks: s.locks.clone(),
            lock_timeout: s.lock_timeout,
            quota_permfail: s.quota_permfail,
        })),
    };
    lmtpd_store::deliver_one(
        &*store,
        Message::new(&env, &body),
        Delivery::new(&rcpt, req.trace.clone(), req.targets.clone()),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn account(home: &Path) -> crate::sys::Account {
        crate::sys::Account {
            name: "alice".into(),
            uid: crate::sys::euid(),
            gid: 0,
            home: home.to_path_buf(),
        }
    }

    #[test]
    fn templates_expand_the_home_and_the_name_only() {
        let a = account(Path::new("/home/al%ice"));
        assert_eq!(
            account_path("~/Maildir", &a, "h").unwrap(),
            PathBuf::from("/home/al%ice/Maildir")
        );
        assert_eq!(
            account_path("/var/mail/%n", &a, "h").unwrap(),
            PathBuf::from("/var/mail/alice")
        );
    }

    #[test]
    fn a_symlinked_home_or_mailbox_and_a_hard_link_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let a = account(&link);
        let why = check_ownership(&link.join("Maildir"), &a, true).unwrap_err();
        assert!(why.contains("is a symlink"), "{why}");
        let a = account(&real);
        check_ownership(&real.join("Maildir"), &a, true).unwrap();
        std::os::unix::fs::symlink("/etc", real.join("Maildir")).unwrap();
        let why = check_ownership(&real.join("Maildir"), &a, true).unwrap_err();
        assert!(why.contains("is a symlink"), "{why}");
        let mbox = dir.path().join("alice");
        std::fs::write(&mbox, b"").unwrap();
        check_ownership(&mbox, &a, false).unwrap();
        std::fs::hard_link(&mbox, dir.path().join("other")).unwrap();
        let why = check_ownership(&mbox, &a, false).unwrap_err();
        assert!(why.contains("hard links"), "{why}");
    }

    #[test]
    fn a_mailbox_of_another_uid_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = account(dir.path());
        a.uid = a.uid.wrapping_add(4242);
        let why = check_ownership(&dir.path().join("Maildir"), &a, true).unwrap_err();
        assert!(why.contains("belongs to uid"), "{why}");
    }
}
