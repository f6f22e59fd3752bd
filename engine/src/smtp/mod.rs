//! The SMTP client: opening sessions ([`client`]), pipelined transactions
//! ([`session`]) and reply parsing ([`reply`]).

pub mod client;
pub mod error;
pub mod reply;
pub mod session;

pub use client::{Timeouts, TlsMode, TlsSettings};
pub use error::{ConnectKind, DnsFailure, Phase, SessionError};
pub use reply::Reply;
pub use session::{Caps, RcptReply, Session};
