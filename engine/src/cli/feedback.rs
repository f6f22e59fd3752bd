//! `volley feedback key` (a new token signing secret for `[feedback]
//! keys`) and `volley feedback parse FILE...` (what the report parser makes
//! of received messages: one JSON line per file, as the inbound listener
//! would classify it). Exposure: the files are hostile input (the parser
//! never panics; unreadable files are reported and the rest go on).

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::{Value, json};
use volley_engine::feedback::report::{self, Report};

use super::{CliResult, EXIT_FAILURE, EXIT_OK, fail};

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Print a new random secret and the `[[feedback.keys]]` entry for it.
    Key {
        #[arg(long, default_value = "k1")]
        id: String,
    },
    /// Print what the parser makes of each message file (JSON lines).
    Parse {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn command(action: Action) -> CliResult {
    match action {
        Action::Key { id } => {
            let mut secret = [0u8; 32];
            aws_lc_rs::rand::fill(&mut secret)
                .map_err(|_| fail(anyhow::anyhow!("no randomness")))?;
            let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
            println!("[[feedback.keys]]\nid = {id:?}\nsecret = {b64:?}");
            Ok(EXIT_OK)
        }
        Action::Parse { files } => {
            let mut code = EXIT_OK;
            for f in files {
                match std::fs::read(&f) {
                    Ok(raw) => {
                        let mut v = describe(&report::parse(&raw));
                        v["file"] = json!(f.display().to_string());
                        println!("{v}");
                    }
                    Err(e) => {
                        eprintln!("{}: {e}", f.display());
                        code = EXIT_FAILURE;
                    }
                }
            }
            Ok(code)
        }
    }
}

/// A report as JSON (SES field names where SES has them).
pub fn describe(r: &Report) -> Value {
    match r {
        Report::Bounce(b) => json!({
            "kind": "bounce",
            "format": b.format,
            "reportingMTA": b.reporting_mta,
            "bouncedRecipients": b.recipients.iter().map(|r| json!({
                "emailAddress": r.email,
                "action": r.action,
                "status": r.status,
                "diagnosticCode": r.diagnostic_code,
                "remoteMtaIp": r.remote_mta_ip,
                "bounceType": r.bounce_type,
                "bounceSubType": r.bounce_sub_type,
            })).collect::<Vec<_>>(),
            "originalMessageId": b.original.message_id(),
        }),
        Report::Complaint(c) => json!({
            "kind": "complaint",
            "complaintFeedbackType": c.feedback_type,
            "userAgent": c.user_agent,
            "arrivalDate": c.arrival_date,
            "sourceIp": c.source_ip,
            "complainedRecipients": c.original_rcpt_to,
            "originalMessageId": c.original.message_id(),
        }),
        Report::AutoReply { reason } => json!({"kind": "autoreply", "reason": reason}),
        Report::Unrecognized { reason } => json!({"kind": "unrecognized", "reason": reason}),
    }
}
