//! Inbound feedback: what comes back about the mail we sent, and what it
//! changes.
//!
//! - [`token`]: signed tokens (VERP return paths, unsubscribe links) that
//!   tie feedback to the message and recipient it answers; [`marks`]:
//!   what production puts on each message.
//! - [`report`]: the pure parser from a received message's bytes to a
//!   classified report (DSN, MTA bounce text, ARF complaint, auto-reply).
//! - [`inbound`]: the listener of the bounce and feedback domains, and how
//!   a report becomes events and suppressions.
//! - [`suppression`]: the account-level suppression list.
//! - [`web`]: one-click unsubscribe pages (RFC 8058).
//!
//! Exposure: everything here past the token signer takes hostile input.

pub mod inbound;
pub mod marks;
pub mod report;
pub mod suppression;
pub mod token;
pub mod web;
