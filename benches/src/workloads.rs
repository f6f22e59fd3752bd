//! The per-message bench's three campaigns, written into a [`Fixture`] as
//! `campaign.toml`, its templates and `recipients.csv`:
//!
//! - `newsletter`: the throughput workload (the personalized example
//!   newsletter, ~21 KB, a dozen variables used ~120 times);
//! - `variables`: a short template whose message is mostly recipient
//!   data (six ~600-byte paragraph columns, every recipient's own);
//! - `shared`: the newsletter without variables, `personalized = false`:
//!   one message rendered and signed per transaction of up to
//!   `recipients_per_transaction` recipients.
//!
//! Inputs: the recipient count and each recipient's domain. Only
//! generated, trusted input.

use volley_tests::Fixture;

use crate::newsletter;

/// A campaign shape of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Newsletter,
    Variables,
    Shared,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::Newsletter, Workload::Variables, Workload::Shared];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Newsletter => "newsletter",
            Workload::Variables => "variables",
            Workload::Shared => "shared",
        }
    }

    /// Whether one message serves several recipients.
    pub fn shared(self) -> bool {
        self == Workload::Shared
    }

    /// Writes the campaign and `n` recipients `user<i>@<domain(i)>`.
    pub fn write(self, fx: &Fixture, n: usize, domain: impl Fn(usize) -> String) {
        match self {
            Workload::Newsletter => newsletter::write_campaign(fx, n, domain),
            Workload::Variables => write_variables(fx, n, domain),
            Workload::Shared => write_shared(fx, n, domain),
        }
    }
}

const WORDS: [&str; 16] = [
    "account", "update", "travel", "invoice", "garden", "music", "river", "window", "summer",
    "ticket", "market", "yellow", "planet", "coffee", "harbor", "silver",
];

/// A ~600-byte sentence run of recipient `i`'s own, paragraph `p`.
fn paragraph(i: usize, p: usize) -> String {
    let mut s = String::with_capacity(640);
    let mut k = i.wrapping_mul(2_654_435_761).wrapping_add(p * 97);
    while s.len() < 600 {
        s.push_str(WORDS[k % WORDS.len()]);
        s.push(if k.is_multiple_of(11) { '.' } else { ' ' });
        k = k / 3 + i + s.len();
    }
    s
}

fn write_variables(fx: &Fixture, n: usize, domain: impl Fn(usize) -> String) {
    fx.write(
        "templates/note.txt",
        "Dear {{first_name}},\n\n{{p1}}\n\n{{p2}}\n\n{{p3}}\n\n{{p4}}\n\n{{p5}}\n\n{{p6}}\n\n-- {{team}}\n",
    );
    let mut csv = String::with_capacity(n * 3_700 + 64);
    csv.push_str("email,first_name,team,p1,p2,p3,p4,p5,p6\n");
    for i in 0..n {
        csv.push_str(&format!("user{i}@{},Name{i},Team {}", domain(i), i % 7));
        for p in 0..6 {
            csv.push(',');
            csv.push_str(&paragraph(i, p));
        }
        csv.push('\n');
    }
    fx.write("recipients.csv", csv);
    fx.write(
        "campaign.toml",
        "id = \"bench\"\nfrom = \"Bench <news@bench.test>\"\nsubject = \"{{first_name}}, a note from {{team}}\"\ntext = \"templates/note.txt\"\nrecipients = \"recipients.csv\"\nlist_unsubscribe = \"https://bench.test/u?e={{email}}\"\n",
    );
}

/// The newsletter with its variables made fixed text.
fn fixed(template: &str) -> String {
    [
        ("{{first_name}}", "reader"),
        ("{{month}}", "June"),
        ("{{plan}}", "team"),
        ("{{email}}", "subscriber"),
        ("{{#if city}}", ""),
        ("{{city}}", "Lisbon"),
        ("{{/if}}", ""),
    ]
    .iter()
    .fold(template.to_string(), |t, (from, to)| t.replace(from, to))
}

fn write_shared(fx: &Fixture, n: usize, domain: impl Fn(usize) -> String) {
    fx.write("templates/newsletter.html", fixed(newsletter::HTML));
    fx.write("templates/newsletter.txt", fixed(newsletter::TEXT));
    let mut csv = String::with_capacity(n * 30 + 8);
    csv.push_str("email\n");
    for i in 0..n {
        csv.push_str(&format!("user{i}@{}\n", domain(i)));
    }
    fx.write("recipients.csv", csv);
    fx.write(
        "campaign.toml",
        "id = \"bench\"\nfrom = \"Bench <news@bench.test>\"\nsubject = \"Your June update\"\nhtml = \"templates/newsletter.html\"\ntext = \"templates/newsletter.txt\"\nrecipients = \"recipients.csv\"\nlist_unsubscribe = \"https://bench.test/u\"\npersonalized = false\nto = \"Bench readers <news@bench.test>\"\n",
    );
}
