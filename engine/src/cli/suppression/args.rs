//! The `volley suppression` subcommands and their options (clap), and
//! the [`Op`] each stands for.

use std::path::PathBuf;

use super::Op;

/// The `volley suppression` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Print entries as CSV (optionally only one reason or time range).
    List {
        /// BOUNCE, COMPLAINT or UNSUBSCRIBE.
        #[arg(long)]
        reason: Option<String>,
        /// Updated at or after (RFC 3339 or ms since the epoch).
        #[arg(long)]
        since: Option<String>,
        /// Updated before.
        #[arg(long)]
        until: Option<String>,
    },
    /// Print one address's entry.
    Get { email: String },
    /// Add addresses (or update their entries).
    Add {
        #[arg(required = true)]
        emails: Vec<String>,
        #[arg(long, default_value = "BOUNCE")]
        reason: String,
        /// Suppress only mail of this list topic.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Remove addresses (their entry without a topic, or with `--topic`).
    Remove {
        #[arg(required = true)]
        emails: Vec<String>,
        #[arg(long)]
        topic: Option<String>,
    },
    /// Import a CSV file (`email[,reason,last_update_time,message_id,feedback_id,topic]`,
    /// header row optional).
    Import {
        file: PathBuf,
        /// The reason of rows that give none.
        #[arg(long, default_value = "BOUNCE")]
        reason: String,
    },
    /// Export every entry as CSV (to FILE, or standard output).
    Export { file: Option<PathBuf> },
}

impl From<Action> for Op {
    fn from(a: Action) -> Op {
        match a {
            Action::List {
                reason,
                since,
                until,
            } => Op::List {
                reason,
                since,
                until,
            },
            Action::Get { email } => Op::Get { email },
            Action::Add {
                emails,
                reason,
                topic,
            } => Op::Add {
                emails,
                reason,
                topic,
            },
            Action::Remove { emails, topic } => Op::Remove { emails, topic },
            Action::Import { file, reason } => Op::Import { file, reason },
            Action::Export { file } => Op::Export { file },
        }
    }
}
