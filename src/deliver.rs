//! Delivery after the final dot: builds each recipient's trace headers, hands the copy to the
//! recipient's store, and turns each outcome into that recipient's LMTP reply and log line.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use lmtpd_store::{Body, DeliveryError, Envelope, MailStore, Message, Recipient};

use crate::config::{Config, StoreKind};
use crate::directory::Resolved;
use crate::proto::{Enhanced, Reply};
use crate::trace;

/// The configured mailbox backends, by kind.
pub struct Stores {
    maildir: Arc<dyn MailStore>,
}

impl Stores {
    /// Builds every store the configuration can route to.
    pub fn from_config(cfg: &Config) -> Stores {
        let maildir = lmtpd_maildir::MaildirStore::new(lmtpd_maildir::MaildirConfig {
            template: cfg.maildir.clone(),
            hostname: cfg.hostname.clone(),
            detail_mailbox: cfg.detail_mailbox,
            quota_permfail: cfg.quota_permfail,
        });
        Stores {
            maildir: Arc::new(maildir),
        }
    }

    /// The store for a kind.
    pub fn get(&self, kind: StoreKind) -> &dyn MailStore {
        match kind {
            StoreKind::Maildir => &*self.maildir,
        }
    }
}

/// Converts a store's error into the reply the client sees.
pub fn error_reply(e: &DeliveryError) -> Reply {
    let lmtpd_store::Enhanced(class, subject, detail) = e.enhanced;
    Reply::new(e.code, Enhanced(class, subject, detail), e.text.clone())
}

/// Delivers one recipient's copy and returns its reply. `conn` is the connection id for the
/// log line; `size` the message size as received.
pub fn deliver_one(
    stores: &Stores,
    hostname: &str,
    conn: u64,
    env: &Envelope,
    body: &dyn Body,
    resolved: &mut Resolved,
) -> Reply {
    let started = Instant::now();
    resolved.rcpt.trace = trace::headers(env, &resolved.rcpt, hostname, SystemTime::now());
    let store = stores.get(resolved.store);
    let msg = Message::new(env, body);
    let result = store
        .deliver(&msg, std::slice::from_ref(&resolved.rcpt))
        .into_results()
        .pop()
        .unwrap_or_else(|| {
            Err(DeliveryError::local_error().with_source("store returned no outcome"))
        });
    let reply = match &result {
        Ok(()) => Reply::new(
            250,
            Enhanced(2, 0, 0),
            format!("<{}> {} Saved", resolved.rcpt.address, env.id),
        ),
        Err(e) => error_reply(e),
    };
    log_outcome(
        conn,
        env,
        &resolved.rcpt,
        store.name(),
        body.len(),
        &reply,
        &result,
        started,
    );
    reply
}

/// One `info` line per recipient outcome: connection, transaction, sender, recipient, size,
/// store, reply code and milliseconds. Never the body.
#[allow(clippy::too_many_arguments)]
pub fn log_outcome(
    conn: u64,
    env: &Envelope,
    rcpt: &Recipient,
    store: &str,
    size: u64,
    reply: &Reply,
    result: &Result<(), DeliveryError>,
    started: Instant,
) {
    let enhanced = reply.enhanced.map(|e| e.to_string()).unwrap_or_default();
    let detail = match result {
        Err(e) => match &e.source {
            Some(src) => format!(" error=\"{src}\""),
            None => String::new(),
        },
        Ok(()) => String::new(),
    };
    log::info!(
        "conn={conn} id={} from=<{}> to=<{}> user={} store={store} size={size} status={} {enhanced} ms={}{detail}",
        env.id,
        env.sender_or_empty(),
        rcpt.address,
        rcpt.user,
        reply.code,
        started.elapsed().as_millis(),
    );
}
