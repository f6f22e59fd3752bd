//! `volley status`: counts by state per campaign and per domain, from the
//! spool's checkpoint and journal (see `volley_spool::inspect`): instant at
//! any spool size, and it works while `volley run` holds the spool.
//!
//! Campaign counts cover every recipient the campaign ever had (ready-made
//! messages are summed per way in: `smtp messages`, `pickup messages`); domain
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

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.total += o.total;
        self.queued += o.queued;
        self.deferred += o.deferred;
        self.delivered += o.delivered;
        self.bounced += o.bounced;
        self.render_failed += o.render_failed;
        self.lost += o.lost;
    }
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
    // ready-made messages (ids `source:...`) are summed per source
    let mut campaigns: Vec<CampaignStatus> = Vec::new();
    let mut sources: BTreeMap<String, CampaignStatus> = BTreeMap::new();
    for c in &i.campaigns {
        let counts: Counts = i
            .summary
            .campaigns
            .get(&c.no)
            .map(|cc| cc.counts.into())
            .unwrap_or_default();
        match c.id.split_once(':') {
            Some((source, _)) => {
                let s = sources
                    .entry(source.to_string())
                    .or_insert_with(|| CampaignStatus {
                        id: format!("{source} messages"),
                        complete: true,
                        counts: Counts::default(),
                    });
                s.counts.add(&counts);
            }
            None => campaigns.push(CampaignStatus {
                id: c.id.clone(),
                complete: c.sealed,
                counts,
            }),
        }
    }
    campaigns.extend(sources.into_values());
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
