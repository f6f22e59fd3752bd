//! Events: the SES event model, what the journal carries for it, the sink
//! trait with its JSONL sink (lines written by `json`), and the pump that connects them.

pub mod detail;
mod json;
mod lag;
pub mod model;
pub mod pump;
pub mod sink;

pub use sink::{JsonlSink, NotificationSink};
