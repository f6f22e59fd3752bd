//! Where recipients are, for an operator: the recipients of one address
//! (every campaign that has it), and the oldest deferred recipients, each
//! with its state, attempts, next attempt, acceptance time, campaign and
//! the last reply journaled for it.
//!
//! Reads an open spool: one pass over its index (records still in the
//! spool) and one over the journal it keeps (the last outcome of each, and
//! recipients whose records were already reclaimed: those are found by the
//! address their journal entries carry). Cost grows with the spool and the
//! journal kept; meant for an operator's question, not for a hot path.
//! Exposure: none (the spool's own files; damaged entries are skipped).

use std::collections::HashMap;

use serde::Serialize;
use volley_spool::{Entry, Kind, RecipientId, Spool, State};

use crate::events::detail::Detail;
use crate::events::model::timestamp;

/// One recipient and where it is.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Found {
    pub email: String,
    /// The campaign's id (`#N` when its definition is gone).
    pub campaign: String,
    /// queued, deferred, delivered, bounced, failed or lost.
    pub state: &'static str,
    pub attempts: u32,
    /// When a deferred recipient is tried next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
    /// When it was accepted into the spool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<String>,
    /// The last outcome journaled for it (none before a first attempt, or
    /// when the journal holding it is no longer kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<Last>,
    #[serde(skip)]
    id: RecipientId,
    #[serde(skip)]
    accepted_ms: u64,
}

/// The last outcome journaled for a recipient.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Last {
    pub at: String,
    /// delivered, deferred, bounced, failed (render) or feedback.
    pub outcome: &'static str,
    /// The server's reply, the diagnostic, or the render error.
    pub reply: String,
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Queued => "queued",
        State::Deferred => "deferred",
        State::Delivered => "delivered",
        State::Bounced => "bounced",
        State::Failed => "failed",
        State::Lost => "lost",
    }
}

fn outcome_name(k: Kind) -> Option<&'static str> {
    Some(match k {
        Kind::Delivered => "delivered",
        Kind::Deferred => "deferred",
        Kind::Bounced => "bounced",
        Kind::Failed => "failed",
        Kind::Feedback => "feedback",
        _ => return None,
    })
}

fn campaign_name(spool: &Spool, no: u32) -> String {
    spool
        .campaign(no)
        .map_or_else(|| format!("#{no}"), |c| c.id.clone())
}

fn last_of(e: &Entry) -> Option<Last> {
    let mut outcome = outcome_name(e.kind)?;
    let d = Detail::decode(&e.detail);
    if d.reject.is_some() {
        outcome = "rejected";
    }
    let reply = d
        .reply
        .or(d.diagnostic)
        .or(d.error)
        .or(d.reject)
        .or(d.status)
        .unwrap_or_default();
    Some(Last {
        at: timestamp(e.at_ms),
        outcome,
        reply,
    })
}

/// Visits every outcome entry of the journal kept.
fn each_outcome(spool: &Spool, mut f: impl FnMut(&Entry)) {
    let Ok(mut reader) = spool.journal_reader(0) else {
        return;
    };
    let end = spool.journal_end();
    let mut damage = Vec::new();
    while let Ok(batch) = reader.read(end, 4096, &mut damage) {
        if batch.is_empty() {
            break;
        }
        for (_, e) in &batch {
            if outcome_name(e.kind).is_some() {
                f(e);
            }
        }
        damage.clear();
    }
}

/// Fills in each recipient's last journaled outcome.
fn with_last(spool: &Spool, found: &mut [Found]) {
    let at: HashMap<RecipientId, usize> =
        found.iter().enumerate().map(|(i, f)| (f.id, i)).collect();
    each_outcome(spool, |e| {
        if let Some(&i) = at.get(&e.id) {
            found[i].last = last_of(e);
            if e.kind != Kind::Feedback {
                found[i].attempts = found[i].attempts.max(e.attempts);
            }
        }
    });
}

/// A recipient as the index pass sees it (no lookups while the index is
/// read: the spool's lock is not taken twice).
struct Seen {
    id: RecipientId,
    state: State,
    retry: Option<volley_spool::Retry>,
    campaign: u32,
    email: String,
}

/// A recipient found by the index pass, with its acceptance time and
/// campaign (looked up after the pass).
fn found(spool: &Spool, s: Seen) -> Found {
    let accepted_ms = spool.accepted_ms(s.id).unwrap_or(0);
    Found {
        email: s.email,
        campaign: campaign_name(spool, s.campaign),
        state: state_name(s.state),
        attempts: s.retry.map_or(0, |r| r.attempts),
        next_attempt: s
            .retry
            .filter(|_| s.state == State::Deferred)
            .map(|r| timestamp(r.next_ms)),
        accepted: (accepted_ms > 0).then(|| timestamp(accepted_ms)),
        last: None,
        id: s.id,
        accepted_ms,
    }
}

/// The recipients in the index that `keep(state, email, how many kept
/// so far)` takes, found (their lookups done after the index pass).
fn visit(spool: &Spool, mut keep: impl FnMut(State, &str, usize) -> bool) -> Vec<Found> {
    let mut seen = Vec::new();
    spool.for_each(|id, state, retry, rec| {
        if keep(state, rec.email.as_str(), seen.len()) {
            seen.push(Seen {
                id,
                state,
                retry,
                campaign: rec.campaign.to_native(),
                email: rec.email.to_string(),
            });
        }
    });
    seen.into_iter().map(|s| found(spool, s)).collect()
}

/// The recipients of `email` (ASCII case ignored), in the spool or only
/// in the journal kept, each with its last outcome.
pub fn address(spool: &Spool, email: &str) -> Vec<Found> {
    let mut out = visit(spool, |_, e, _| e.eq_ignore_ascii_case(email));
    // recipients whose records were reclaimed: from their journal entries
    let mut gone: HashMap<RecipientId, Found> = HashMap::new();
    let known: std::collections::HashSet<RecipientId> = out.iter().map(|f| f.id).collect();
    each_outcome(spool, |e| {
        if known.contains(&e.id) || !e.email.eq_ignore_ascii_case(email) {
            return;
        }
        let f = gone.entry(e.id).or_insert_with(|| Found {
            email: e.email.clone(),
            campaign: campaign_name(spool, e.campaign),
            state: "",
            attempts: 0,
            next_attempt: None,
            accepted: None,
            last: None,
            id: e.id,
            accepted_ms: 0,
        });
        if e.kind != Kind::Feedback {
            f.attempts = e.attempts;
        }
        f.state = match e.kind {
            Kind::Delivered => "delivered",
            Kind::Bounced | Kind::Feedback => "bounced",
            Kind::Failed => "failed",
            _ => "deferred",
        };
        f.last = last_of(e);
    });
    with_last(spool, &mut out);
    out.extend(gone.into_values());
    out
}

/// The `limit` deferred recipients accepted earliest, oldest first, each
/// with its last outcome. The index is visited in id order, the order the
/// spool accepted recipients in: the first `limit` deferred are kept.
pub fn oldest_deferred(spool: &Spool, limit: usize) -> Vec<Found> {
    let mut all = visit(spool, |state, _, kept| {
        state == State::Deferred && kept < limit
    });
    all.sort_by_key(|f| (f.accepted_ms, f.id));
    with_last(spool, &mut all);
    all
}
