//! Typed errors of the spool: each names the file, campaign or recipient.

use std::path::PathBuf;

/// Errors returned by the spool.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("spool {0} is in use by another process (lock held)")]
    Locked(PathBuf),
    #[error("{path} is not a volley spool file (bad magic or version)")]
    BadMagic { path: PathBuf },
    #[error("campaign id {0:?} already exists in the spool")]
    DuplicateCampaign(String),
    #[error("campaign number {0} is not in the spool")]
    UnknownCampaign(u32),
    #[error("recipient {0} is not in the spool")]
    UnknownRecipient(crate::RecipientId),
    #[error("recipient {id} record is damaged: {reason}")]
    BadRecord {
        id: crate::RecipientId,
        reason: String,
    },
    #[error("record for {email:?} is {size} bytes; the limit is {limit}")]
    RecordTooLarge {
        email: String,
        size: usize,
        limit: usize,
    },
    #[error("campaign {id:?} is {size} bytes stored; the limit is {limit}")]
    CampaignTooLarge {
        id: String,
        size: usize,
        limit: usize,
    },
    #[error("spool is read-only (opened for inspection)")]
    ReadOnly,
    #[error("encoding a record failed: {0}")]
    Encode(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl Error {
    /// The disk (or the filesystem's quota) is full.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::Io { error, .. } if error.raw_os_error() == Some(libc::ENOSPC))
    }
}

/// Result alias of the spool.
pub type Result<T> = std::result::Result<T, Error>;

/// Attaches an operation and path to an I/O error.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|error| Error::Io {
            op,
            path: path.to_path_buf(),
            error,
        })
    }
}
