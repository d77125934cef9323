//! What a store is asked to do after the final dot: each recipient's [`Delivery`] (its trace
//! prefix and one or more [`Target`]s: a folder and flags), the [`Request`] that carries them
//! with the message, and [`combine`], the one rule that turns several targets' results into
//! that recipient's single outcome.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;

use crate::{DeliveryError, DetailMailbox, Message, Recipient};

/// An IMAP system flag a copy can be stored with (RFC 3501 §2.3.2). Each store maps it to
/// its own form: Maildir info letters, mbox `Status:`/`X-Status:` lines, SQLite's `flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flag {
    /// `\Draft` (Maildir `D`, mbox `X-Status: T`).
    Draft,
    /// `\Flagged` (Maildir `F`, mbox `X-Status: F`).
    Flagged,
    /// `\Answered` (Maildir `R`, mbox `X-Status: A`).
    Answered,
    /// `\Seen` (Maildir `S`, mbox `Status: R`).
    Seen,
    /// `\Deleted` (Maildir `T`, mbox `X-Status: D`).
    Deleted,
}

impl Flag {
    /// Every flag, in the ASCII order of the Maildir info letters (which Maildir requires).
    pub const ALL: [Flag; 5] = [
        Flag::Draft,
        Flag::Flagged,
        Flag::Answered,
        Flag::Seen,
        Flag::Deleted,
    ];

    /// The IMAP name, e.g. `\Seen`.
    pub fn imap_name(self) -> &'static str {
        match self {
            Flag::Draft => "\\Draft",
            Flag::Flagged => "\\Flagged",
            Flag::Answered => "\\Answered",
            Flag::Seen => "\\Seen",
            Flag::Deleted => "\\Deleted",
        }
    }

    /// The Maildir info letter (`cur/<name>:2,<letters>`).
    pub fn maildir_letter(self) -> char {
        match self {
            Flag::Draft => 'D',
            Flag::Flagged => 'F',
            Flag::Answered => 'R',
            Flag::Seen => 'S',
            Flag::Deleted => 'T',
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`Flag`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    /// No flag: a new, unseen message.
    pub const NONE: Flags = Flags(0);

    /// The set of `flags`.
    pub fn of(flags: &[Flag]) -> Flags {
        let mut set = Flags::NONE;
        for f in flags {
            set.insert(*f);
        }
        set
    }

    /// Adds `flag`.
    pub fn insert(&mut self, flag: Flag) {
        self.0 |= flag.bit();
    }

    /// True when `flag` is in the set.
    pub fn contains(self, flag: Flag) -> bool {
        self.0 & flag.bit() != 0
    }

    /// True for the empty set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The flags in the set, in [`Flag::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Flag> {
        Flag::ALL.into_iter().filter(move |f| self.contains(*f))
    }

    /// The IMAP names separated by spaces, e.g. `\Flagged \Seen` (SQLite's `flags` column).
    pub fn imap_list(self) -> String {
        self.iter()
            .map(Flag::imap_name)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Which mailbox of the recipient a copy goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Folder {
    /// The recipient's inbox.
    Inbox,
    /// A named folder (`.` separates hierarchy levels, as in `Lists.rust`). Whoever built the
    /// target checked the name ([`crate::template::check_detail`]); stores check it again and
    /// store an unsafe one's copy in the inbox.
    Named {
        /// The folder name.
        name: String,
        /// Create the folder when it does not exist; otherwise a missing folder means the
        /// inbox (the `+detail` rule `detail_mailbox = yes`, and Sieve `fileinto` without
        /// `:create`).
        create: bool,
    },
}

impl fmt::Display for Folder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Folder::Inbox => f.write_str("INBOX"),
            Folder::Named { name, .. } => f.write_str(name),
        }
    }
}

/// A replacement for the header section of one copy (Sieve `editheader`, RFC 5293): the copy
/// is the trace prefix, then `header`, then the body without its first `replaces` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderEdit {
    /// The complete new header section, LF line ends, ending with its empty line.
    pub header: Vec<u8>,
    /// How many bytes of the spooled body (its original header section, with its empty
    /// line) `header` replaces.
    pub replaces: u64,
    /// The number of LF line ends in those bytes.
    pub replaces_lines: u64,
}

/// One place a recipient's copy is stored: a folder, the flags the copy gets there and, when
/// a filter edited it, the copy's own header section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The folder.
    pub folder: Folder,
    /// The flags of the stored copy.
    pub flags: Flags,
    /// The copy's own header section; `None` stores the message as received.
    pub edit: Option<Arc<HeaderEdit>>,
}

impl Target {
    /// The inbox, no flags: what a recipient gets when nothing else is asked for.
    pub fn inbox() -> Target {
        Target {
            folder: Folder::Inbox,
            flags: Flags::NONE,
            edit: None,
        }
    }

    /// The folder `name` (created when missing if `create`), no flags.
    pub fn folder(name: impl Into<String>, create: bool) -> Target {
        Target {
            folder: Folder::Named {
                name: name.into(),
                create,
            },
            flags: Flags::NONE,
            edit: None,
        }
    }

    /// Where a `+detail` sends the copy under the `detail_mailbox` rule `mode`: the inbox
    /// without a detail or with [`DetailMailbox::No`]; else the detail's folder, created when
    /// missing with [`DetailMailbox::Create`], or the inbox when missing with
    /// [`DetailMailbox::Yes`]. The store still checks the name (an unsafe one means the inbox).
    pub fn for_detail(detail: Option<&str>, mode: DetailMailbox) -> Target {
        match (detail, mode) {
            (None, _) | (_, DetailMailbox::No) => Target::inbox(),
            (Some(d), DetailMailbox::Yes) => Target::folder(d, false),
            (Some(d), DetailMailbox::Create) => Target::folder(d, true),
        }
    }

    /// The same target with `flags`.
    pub fn with_flags(mut self, flags: Flags) -> Target {
        self.flags = flags;
        self
    }

    /// The same target with its own header section.
    pub fn with_edit(mut self, edit: Arc<HeaderEdit>) -> Target {
        self.edit = Some(edit);
        self
    }
}

/// One recipient's part of a [`Request`]: who it is, the trace header block that starts
/// each of its copies, and where the copies go. It always ends in exactly one outcome.
#[derive(Clone, Debug)]
pub struct Delivery<'a> {
    /// The resolved recipient.
    pub rcpt: &'a Recipient,
    /// Trace headers (Return-Path, Delivered-To, Received), LF line endings: the copy is
    /// this prefix followed by the message body.
    pub trace: Vec<u8>,
    /// Where the copies go; never empty (an empty list is treated as the inbox).
    pub targets: Vec<Target>,
}

impl<'a> Delivery<'a> {
    /// A delivery of `rcpt` to `targets` (the inbox when `targets` is empty) with `trace`.
    pub fn new(rcpt: &'a Recipient, trace: Vec<u8>, mut targets: Vec<Target>) -> Self {
        if targets.is_empty() {
            targets.push(Target::inbox());
        }
        Delivery {
            rcpt,
            trace,
            targets,
        }
    }

    /// What precedes the body in the copy at `target`: the trace headers, then the edited
    /// header section when the target has one.
    pub fn prefix(&self, target: &Target) -> Cow<'_, [u8]> {
        match &target.edit {
            None => Cow::Borrowed(&self.trace),
            Some(e) => Cow::Owned([&self.trace[..], &e.header[..]].concat()),
        }
    }

    /// Size in bytes of the copy at `target`, as stored.
    pub fn copy_size_at(&self, msg: &Message<'_>, target: &Target) -> u64 {
        let skip = target.edit.as_ref().map_or(0, |e| e.replaces);
        let head = target.edit.as_ref().map_or(0, |e| e.header.len() as u64);
        msg.copy_size(&self.trace) + head - skip.min(msg.body.len())
    }

    /// Number of LF line ends in the copy at `target`.
    pub fn copy_lines_at(&self, msg: &Message<'_>, target: &Target) -> u64 {
        let (head, skip) = target.edit.as_ref().map_or((0, 0), |e| {
            let lines = e.header.iter().filter(|&&b| b == b'\n').count() as u64;
            (lines, e.replaces_lines)
        });
        (msg.copy_lines(&self.trace) + head).saturating_sub(skip)
    }

    /// A reader over the whole copy at `target`: [`Delivery::prefix`], then the body (without
    /// the header section an edit replaces).
    pub fn reader_at<'p>(
        &'p self,
        msg: &'p Message<'p>,
        target: &'p Target,
    ) -> io::Result<impl Read + 'p> {
        let mut body = msg.body.open()?;
        if let Some(e) = &target.edit {
            let skipped = io::copy(&mut (&mut body).take(e.replaces), &mut io::sink())?;
            if skipped != e.replaces {
                return Err(io::Error::other(
                    "the spooled body is shorter than its header section",
                ));
            }
        }
        Ok(io::Cursor::new(self.prefix(target)).chain(body))
    }
}

/// What a store gets after the final dot: the message and every recipient's [`Delivery`].
/// The store reports each delivery's outcome by its index in `deliveries`.
pub struct Request<'a> {
    /// The envelope and the spooled body.
    pub message: Message<'a>,
    /// One entry per recipient handed to this store, in RCPT order.
    pub deliveries: &'a [Delivery<'a>],
}

/// One recipient's outcome from the results of its targets, in target order: `Ok` as soon as
/// any copy is durable (a temporary failure would make the client retry and duplicate the
/// copies already stored; the failed targets are logged by the store), else the first
/// target's error. An empty list (nothing attempted) is a local error. Every result is read,
/// so a store may pass a lazy iterator that stores each target as it is read.
pub fn combine(
    results: impl IntoIterator<Item = Result<(), DeliveryError>>,
) -> Result<(), DeliveryError> {
    let mut first_err = None;
    let mut stored = false;
    for r in results {
        match r {
            Ok(()) => stored = true,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match (stored, first_err) {
        (true, _) => Ok(()),
        (false, Some(e)) => Err(e),
        (false, None) => Err(DeliveryError::local_error().with_source("no target to store to")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_iterate_in_maildir_letter_order() {
        let set = Flags::of(&[Flag::Seen, Flag::Draft, Flag::Answered]);
        let letters: String = set.iter().map(Flag::maildir_letter).collect();
        assert_eq!(letters, "DRS");
        assert_eq!(set.imap_list(), "\\Draft \\Answered \\Seen");
        assert!(Flags::NONE.is_empty());
    }

    #[test]
    fn a_recipient_with_any_durable_copy_is_ok() {
        let quota = || DeliveryError::over_quota(false);
        assert!(combine(vec![Err(quota()), Ok(())]).is_ok());
        let e = combine(vec![Err(quota()), Err(DeliveryError::local_error())]);
        assert_eq!(e.map_err(|e| e.code), Err(452), "first target's error");
        assert!(combine(Vec::new()).is_err());
    }

    #[test]
    fn an_empty_target_list_means_the_inbox() {
        let r = Recipient::new("a", "b");
        let d = Delivery::new(&r, Vec::new(), Vec::new());
        assert_eq!(d.targets, vec![Target::inbox()]);
    }
}
