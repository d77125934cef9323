//! The sans-IO LMTP protocol core (RFC 2033): bytes in, events and replies out. No I/O, clocks
//! or threads; the driver feeds [`Session::receive`], handles [`Event`]s and sends
//! [`Session::output`].

pub mod address;
pub mod command;
pub mod data;
pub mod dsn;
pub mod reply;
pub mod session;

pub use address::{AddressError, Mailbox};
pub use command::{Command, RcptParams, Verb, MAX_COMMAND_LINE};
pub use data::{ChunkDecoder, DataDecoder};
pub use dsn::{Notify, Orcpt, Ret};
pub use reply::{Enhanced, Reply};
#[doc(hidden)]
pub use session::testing;
pub use session::{BareNewline, Event, MailFrom, Session, SessionConfig, Transaction, Xforward};
