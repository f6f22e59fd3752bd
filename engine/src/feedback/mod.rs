//! Inbound bounce and complaint handling: what arrives at the bounce and
//! feedback addresses (DSNs, MTA bounce texts, ARF complaints, auto-replies)
//! and how it is turned into SES-style Bounce and Complaint outcomes.
//!
//! - [`report`]: the pure parser from raw message bytes to a classified
//!   report (hostile network input).

pub mod report;
