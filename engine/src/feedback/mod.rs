//! Inbound feedback: bounces, complaints, suppression, unsubscribe.
//!
//! - [`suppression`]: the account-level suppression list (durable store of
//!   addresses the engine must not mail, with SES's reasons).

pub mod suppression;
