//! `volley status`: counts by state per campaign and per domain, read from
//! the spool (read-only; works while `volley run` holds the spool).

use std::collections::BTreeMap;

use serde::Serialize;
use volley_spool::{Spool, State};

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

impl Counts {
    fn add(&mut self, s: State) {
        self.total += 1;
        match s {
            State::Queued => self.queued += 1,
            State::Deferred => self.deferred += 1,
            State::Delivered => self.delivered += 1,
            State::Bounced => self.bounced += 1,
            State::Failed => self.render_failed += 1,
            State::Lost => self.lost += 1,
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
    /// Recipients found damaged when the spool was opened.
    pub damaged: usize,
}

/// Collects the report from a spool.
pub fn collect(spool: &Spool, damaged: usize) -> Status {
    let mut totals = Counts::default();
    let mut by_campaign: BTreeMap<u32, Counts> = BTreeMap::new();
    let mut domains: BTreeMap<String, Counts> = BTreeMap::new();
    spool.for_each(|_, state, _, rec| {
        totals.add(state);
        by_campaign
            .entry(rec.campaign.to_native())
            .or_default()
            .add(state);
        match domains.get_mut(rec.domain()) {
            Some(c) => c.add(state),
            None => {
                let mut c = Counts::default();
                c.add(state);
                domains.insert(rec.domain().to_string(), c);
            }
        }
    });
    totals.lost += damaged as u64;
    let campaigns = spool
        .campaigns()
        .into_iter()
        .map(|c| CampaignStatus {
            id: c.id.clone(),
            complete: c.is_sealed(),
            counts: by_campaign.remove(&c.no).unwrap_or_default(),
        })
        .collect();
    Status {
        totals,
        campaigns,
        domains,
        damaged,
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
    out.push_str("\ndomains\n");
    out.push_str(&head);
    for (d, c) in &s.domains {
        out.push_str(&row(d, c));
    }
    out.push('\n');
    out.push_str(&row("total", &s.totals));
    if s.damaged > 0 {
        out.push_str(&format!(
            "damaged recipients found in the spool: {}\n",
            s.damaged
        ));
    }
    out
}
