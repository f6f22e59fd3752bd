//! Events: the SES event model, what the journal carries for it, the sink
//! trait with its JSONL sink (lines written by `json`), the webhook and
//! AMQP sinks (SNS format: `sns`), the objects of feedback events
//! (`feedback`), and the pumps that connect them (`fanout`: one per
//! destination).

pub mod amqp;
pub mod detail;
mod env;
pub mod fanout;
pub mod feedback;
pub mod id;
pub(crate) mod json;
mod lag;
pub mod model;
pub mod pump;
pub mod sink;
pub mod sns;
pub mod webhook;

pub use sink::{JsonlSink, NotificationSink};
