//! The SMTP client: opening sessions ([`client`]), pipelined transactions
//! ([`session`]) and reply parsing ([`reply`]).

pub mod client;
pub mod reply;
pub mod session;

pub use client::{Phase, SessionError, Timeouts, TlsSettings};
pub use reply::Reply;
pub use session::{Caps, RcptReply, Session};
