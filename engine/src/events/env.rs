//! What webhook and broker sinks need from the service ([`SinkEnv`]), and
//! the SNS side that `sns` sinks share with the HTTP listener
//! ([`SnsState`]). Data only.

use std::sync::Arc;

use super::sns::{Signer, Subscriptions};

/// The SNS side shared by every `sns` webhook and the HTTP listener.
#[derive(Clone, Debug)]
pub struct SnsState {
    pub signer: Arc<Signer>,
    pub subscriptions: Arc<Subscriptions>,
}

/// What webhook and broker sinks need from the service.
#[derive(Clone)]
pub struct SinkEnv {
    /// The runtime requests run on (pumps are plain threads).
    pub runtime: tokio::runtime::Handle,
    /// The spool's uid (event ids are unique per spool).
    pub spool_uid: u64,
    /// Present when some webhook uses the `sns` format.
    pub sns: Option<SnsState>,
    /// The base of links in SNS messages.
    pub public_url: String,
    pub account_id: String,
    pub region: String,
}
