//! Delivery to local Unix accounts as those accounts (`accounts = passwd`): a privileged
//! helper process, started before lmtpd drops root, writes each copy in a child that has
//! become the account; lmtpd itself stays unprivileged and talks to it over a socketpair,
//! passing the spooled body as a descriptor.
//!
//! [`wire`] is the request/outcome format (sans-IO), [`server`] the keeper, helper and
//! request child (root until each child becomes its account), [`client`] lmtpd's side and the
//! stores whose deliveries are helper requests.

pub mod client;
pub mod server;
pub mod wire;
