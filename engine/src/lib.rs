//! volley-engine: a self-hosted bulk email sending engine.
//!
//! # Layout (the data path, in order)
//! - [`config`]: the service configuration.
//! - [`campaign`], [`address`], [`ingest`]: campaign files and recipient lists
//!   into the spool (producers).
//! - [`delivery`]: scheduler, per-destination shards, their SMTP
//!   connections and the production pool, the recorder that journals
//!   outcomes.
//! - [`smtp`]: the SMTP client protocol (opening a session, pipelined
//!   transactions, replies) that connections use.
//! - [`template`]: campaign templates (Handlebars, SES semantics), checked
//!   when a campaign is loaded and rendered per recipient.
//! - [`message`]: one message: rendering, MIME, DKIM, the DATA payload.
//! - [`outcome`]: the one classifier of replies and failures.
//! - [`events`]: SES-format events from the journal to notification sinks.
//! - [`feedback`]: bounces, complaints and unsubscribes coming back;
//!   the suppression list.
//! - [`engine`]: wires the stages together and shuts them down.
//! - [`admin_log`]: the operators' actions on the running service.
//! - [`metrics`], [`http`], [`status`], [`inspect`], [`capture`]:
//!   observability and tools.
//!
//! The spool itself is the `volley-spool` crate.

pub mod address;
pub mod admin_log;
pub mod api;
pub mod campaign;
pub mod capture;
pub mod config;
pub mod delivery;
pub mod engine;
pub mod events;
pub mod feedback;
pub mod http;
pub mod ingest;
pub mod inspect;
pub mod message;
pub mod metrics;
pub mod outcome;
pub mod smtp;
pub mod status;
pub mod submission;
pub mod template;
