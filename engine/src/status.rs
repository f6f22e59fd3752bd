//! `volley status`: counts by state per campaign and per domain, from the
//! spool's checkpoint and journal (see `volley_spool::inspect`): instant at
//! any spool size, and it works while `volley run` holds the spool.
//!
//! Campaign counts cover every recipient the campaign ever had; domain
//! counts cover recipients still in the spool (finished segments are
//! reclaimed).

use std::collections::BTreeMap;

use serde::Serialize;
use volley_spool::Inspection;

/// Counts of recipients by state.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub queued: u64,
    pub deferred: u64,
    pub delivered: u64,
    pub bounced: u64,
    #[serde(rename = "render-failed")]
    pub render_failed: u64,
    pub lost: u64,
}

impl From<volley_spool::Counts> for Counts {
    fn from(c: volley_spool::Counts) -> Counts {
        Counts {
            total: c.total(),
            queued: c.queued,
            deferred: c.deferred,
            delivered: c.delivered,
            bounced: c.bounced,
            render_failed: c.failed,
            lost: c.lost,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CampaignStatus {
    pub id: String,
    /// The whole recipient list is in the spool.
    pub complete: bool,
    #[serde(flatten)]
    pub counts: Counts,
}

/// The status report.
#[derive(Debug, Serialize)]
pub struct Status {
    pub totals: Counts,
    pub campaigns: Vec<CampaignStatus>,
    pub domains: BTreeMap<String, Counts>,
    /// Problems met while reading the spool.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Builds the report from an inspection of the spool.
pub fn collect(i: Inspection) -> Status {
    let campaigns = i
        .campaigns
        .iter()
        .map(|c| CampaignStatus {
            id: c.id.clone(),
            complete: c.sealed,
            counts: i
                .summary
                .campaigns
                .get(&c.no)
                .map(|cc| cc.counts.into())
                .unwrap_or_default(),
        })
        .collect();
    Status {
        totals: i.summary.totals().into(),
        campaigns,
        domains: i
            .summary
            .domains
            .into_iter()
            .map(|(d, c)| (d, c.into()))
            .collect(),
        problems: i.problems,
    }
}

fn row(name: &str, c: &Counts) -> String {
    format!(
        "{name:<32} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        c.queued, c.deferred, c.delivered, c.bounced, c.render_failed, c.total
    )
}

/// Plain-text table.
pub fn render(s: &Status) -> String {
    let head = format!(
        "{:<32} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "", "queued", "deferred", "delivered", "bounced", "rfailed", "total"
    );
    let mut out = String::from("campaigns\n");
    out.push_str(&head);
    for c in &s.campaigns {
        let name = if c.complete {
            c.id.clone()
        } else {
            format!("{} (ingest incomplete)", c.id)
        };
        out.push_str(&row(&name, &c.counts));
    }
    out.push_str("\ndomains (recipients still in the spool)\n");
    out.push_str(&head);
    for (d, c) in &s.domains {
        out.push_str(&row(d, c));
    }
    out.push('\n');
    out.push_str(&row("total", &s.totals));
    if s.totals.lost > 0 {
        out.push_str(&format!(
            "recipients lost to spool damage: {}\n",
            s.totals.lost
        ));
    }
    for p in &s.problems {
        out.push_str(&format!("problem: {p}\n"));
    }
    out
}
