//! The account helper's unprivileged side, in lmtpd itself: starts the keeper while still
//! root, takes over each new helper socket the keeper announces, and the two stores
//! (Maildir and mbox of accounts) whose deliveries are requests to the helper.
//!
//! A dead helper means `451 4.3.0` for account recipients until the keeper has started a
//! new one (about a second); virtual users never go near it.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use lmtpd_store::{Body, DeliveryError, MailStore, Recipient, Reporter, Request, Usage};

use super::server::{read_frame, REQUEST_TIMEOUT};
use super::wire::{self, AccountStore};
use crate::config::Config;
use crate::sys;

/// The connection to the helper.
pub struct HelperClient {
    sock: Mutex<Option<UnixStream>>,
    spool_dir: PathBuf,
    reply_timeout: Duration,
}

static CLIENT: OnceLock<Arc<HelperClient>> = OnceLock::new();

/// The helper of this process, once [`start`] has run.
pub fn get() -> Option<Arc<HelperClient>> {
    CLIENT.get().cloned()
}

/// Starts the keeper (`lmtpd account-helper`, as root: call before dropping root), sends it
/// the configuration and waits up to 10 s for the first helper. A thread then takes over
/// every helper the keeper starts later.
pub fn start(cfg: &Config) -> io::Result<Arc<HelperClient>> {
    let (control, theirs) = UnixStream::pair()?;
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .arg("account-helper")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .spawn()?;
    let text = cfg.dump();
    let mut frame = u32::try_from(text.len())
        .map_err(|_| io::Error::other("configuration too large"))?
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(text.as_bytes());
    (&control).write_all(&frame)?;
    control.set_read_timeout(Some(Duration::from_secs(10)))?;
    let first = take_socket(&control)?;
    control.set_read_timeout(None)?;
    let client = Arc::new(HelperClient {
        sock: Mutex::new(Some(first)),
        spool_dir: cfg.delivery.spool_dir.clone(),
        reply_timeout: cfg.mbox.lock_timeout + REQUEST_TIMEOUT,
    });
    let keep = Arc::clone(&client);
    std::thread::Builder::new()
        .name("lmtpd-account-helper".into())
        .spawn(move || {
            let mut child = child;
            loop {
                match take_socket(&control) {
                    Ok(s) => {
                        log::info!("account helper is back");
                        *keep.lock() = Some(s);
                    }
                    Err(e) => {
                        log::error!(
                            "the account helper's keeper is gone ({e}); system accounts get 451 4.3.0 until lmtpd restarts"
                        );
                        *keep.lock() = None;
                        let _ = child.wait();
                        return;
                    }
                }
            }
        })?;
    let _ = CLIENT.set(Arc::clone(&client));
    Ok(client)
}

/// Receives one helper socket announced by the keeper.
fn take_socket(control: &UnixStream) -> io::Result<UnixStream> {
    let mut byte = [0u8; 1];
    let (n, mut fds) = sys::recv_with_fds(control.as_fd(), &mut byte)?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    match fds.pop() {
        Some(fd) if byte == *b"H" && fds.is_empty() => Ok(UnixStream::from(fd)),
        _ => Err(io::Error::other("malformed message from the keeper")),
    }
}

fn unavailable(why: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::local_error().with_source(format!("account helper: {why}"))
}

impl HelperClient {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<UnixStream>> {
        self.sock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends one request with its body and waits for the outcome.
    pub fn deliver(&self, req: &wire::Request, body: &dyn Body) -> Result<(), DeliveryError> {
        let frame = req.encode().map_err(unavailable)?;
        let copied;
        let file = match body.file() {
            Some(f) => f,
            None => {
                let mut f = crate::spool::create_anonymous(&self.spool_dir)
                    .map_err(|e| unavailable(format!("spool file: {e}")))?;
                io::copy(
                    &mut body.open().map_err(|e| unavailable(format!("body: {e}")))?,
                    &mut f,
                )
                .map_err(|e| unavailable(format!("spool file: {e}")))?;
                copied = f;
                &copied
            }
        };
        let ours = self.exchange(&frame, &[file.as_fd()])?;
        let (payload, _) = read_frame(&ours).map_err(|e| unavailable(format!("no reply ({e})")))?;
        wire::decode_outcome(&payload)
    }

    /// Asks the helper for one of an account's Sieve scripts, which it reads as the
    /// account. `Err` (`451 4.3.0`) when the helper cannot be asked or its reply is
    /// malformed: the script may exist, so the message must not be filtered without it.
    pub fn script(&self, req: &wire::ScriptRequest) -> Result<wire::ScriptReply, DeliveryError> {
        let frame = req.encode().map_err(unavailable)?;
        let ours = self.exchange(&frame, &[])?;
        let (payload, _) = read_frame(&ours).map_err(|e| unavailable(format!("no reply ({e})")))?;
        wire::decode_script_reply(&payload).map_err(unavailable)
    }

    /// Opens a request socket to the helper (its own child serves it), sends `frame` with
    /// `fds` and returns our end, ready for the reply.
    fn exchange(
        &self,
        frame: &[u8],
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> Result<UnixStream, DeliveryError> {
        let (ours, theirs) = UnixStream::pair().map_err(unavailable)?;
        {
            let mut guard = self.lock();
            let Some(sock) = guard.as_ref() else {
                return Err(unavailable("not running"));
            };
            if let Err(e) = sys::send_with_fds(sock.as_fd(), b"R", &[theirs.as_fd()]) {
                *guard = None;
                return Err(unavailable(format!("gone ({e})")));
            }
        }
        drop(theirs);
        let sent = sys::send_with_fds(ours.as_fd(), frame, fds)
            .map_err(|e| unavailable(format!("sending the request: {e}")))?;
        (&ours)
            .write_all(&frame[sent..])
            .map_err(|e| unavailable(format!("sending the request: {e}")))?;
        ours.set_read_timeout(Some(self.reply_timeout))
            .map_err(unavailable)?;
        Ok(ours)
    }
}

/// The Maildir or mbox of system accounts: each delivery is one request to the helper.
pub struct HelperStore {
    kind: AccountStore,
    client: Option<Arc<HelperClient>>,
}

impl HelperStore {
    /// The store of `kind` over `client` (`None`: every delivery is `451 4.3.0`).
    pub fn new(kind: AccountStore, client: Option<Arc<HelperClient>>) -> HelperStore {
        HelperStore { kind, client }
    }
}

impl MailStore for HelperStore {
    fn name(&self) -> &'static str {
        match self.kind {
            AccountStore::Maildir => "account-maildir",
            AccountStore::Mbox => "account-mbox",
        }
    }

    fn check(&self, _rcpt: &Recipient) -> Result<(), DeliveryError> {
        // The mailbox can only be read as the account, so quota is checked at delivery;
        // here only whether a helper is there to deliver at all.
        match &self.client {
            None => Err(unavailable("not started")),
            Some(c) if c.lock().is_none() => Err(unavailable("not running")),
            Some(_) => Ok(()),
        }
    }

    fn deliver(&self, req: &Request<'_>, reporter: &Reporter) {
        for (i, d) in req.deliveries.iter().enumerate() {
            let outcome = match &self.client {
                None => Err(unavailable(
                    "not started (accounts = passwd needs lmtpd to start as root)",
                )),
                Some(c) => c.deliver(
                    &wire::Request {
                        account: d.rcpt.local.clone(),
                        domain: d.rcpt.domain.clone(),
                        address: d.rcpt.address.clone(),
                        detail: d.rcpt.detail.clone(),
                        store: self.kind,
                        quota: d.rcpt.quota,
                        sender: req.message.envelope.sender.clone(),
                        id: req.message.envelope.id.clone(),
                        smtputf8: req.message.envelope.smtputf8,
                        eight_bit: req.message.envelope.eight_bit,
                        body_len: req.message.body.len(),
                        body_lines: req.message.body.lines(),
                        targets: d.targets.clone(),
                        trace: d.trace.clone(),
                    },
                    req.message.body,
                ),
            };
            if !reporter.report(i, outcome) {
                // The client is gone: start no further copy.
                return;
            }
        }
    }

    fn reports_progressively(&self) -> bool {
        true
    }

    fn mailbox_exists(&self, _rcpt: &Recipient, _folder: &str) -> Result<bool, DeliveryError> {
        // Only the account can look; a copy for a missing folder without :create goes to
        // the inbox in the store itself.
        Ok(true)
    }

    /// `Ok(None)`: the mailbox is readable only as the account, and the helper answers only
    /// delivery and script requests; the helper itself enforces the quota at delivery.
    fn usage(&self, _rcpt: &Recipient) -> Result<Option<Usage>, DeliveryError> {
        Ok(None)
    }

    /// `Ok(None)`, for the same reason as [`HelperStore::usage`].
    fn recalc(&self, _rcpt: &Recipient) -> Result<Option<Usage>, DeliveryError> {
        Ok(None)
    }
}
