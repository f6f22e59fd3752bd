//! Producers of ready-made messages: SMTP submission (`smtp`), and the
//! pieces they share: the message made fit for the spool (`message`) and
//! the acceptor that stores messages durably in groups (`accept`).
//!
//! ```text
//! SMTP session ─┐                      ┌─► spool: one campaign per message
//! drop dir ─────┼─► message::prepare ──┤   (definition + bytes), its
//! sendmail ─────┘                      │   recipients as ordinary records
//!                   accept::Acceptor ──┘   (group commit) ─► delivery
//! ```
//!
//! A producer answers its client (250, ...) only after the acceptor says
//! the message and its recipients are durable.

pub mod accept;
pub mod auth;
pub mod message;
pub mod pickup;
pub mod quota;
pub mod smtp;
