//! Configuration sets (SES): named sets in the config, the one a campaign
//! names or the default, and the name every event of its mail carries
//! (`mail.tags["ses:configuration-set"]`). A set's event destinations are
//! configured with it (see the README's Events section). Pure.

use serde::Deserialize;

use super::Config;
use super::destinations::{Destination, MAX_PER_SET};

/// One configuration set (`[configuration_sets.NAME]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigurationSet {
    /// Where the set's events go besides `[events] jsonl`.
    #[serde(default)]
    pub destinations: Vec<Destination>,
    /// The egress pool of its mail (SES: the set's sending pool).
    #[serde(default)]
    pub pool: Option<String>,
}

/// Whether `name` is a configuration set name as SES allows it: 1 to 64
/// ASCII letters, digits, `_` and `-`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

impl Config {
    /// The configuration set of mail that names `named` (or none): that
    /// set, which must be in the config, else the default set, if any.
    pub fn configuration_set(&self, named: Option<&str>) -> Result<Option<String>, String> {
        let Some(name) = named else {
            return Ok(self.events.default_configuration_set.clone());
        };
        if self.configuration_sets.contains_key(name) {
            return Ok(Some(name.to_string()));
        }
        let known: Vec<&str> = self.configuration_sets.keys().map(String::as_str).collect();
        Err(if known.is_empty() {
            format!(
                "no configuration set {name:?}: the config defines none ([configuration_sets.NAME])"
            )
        } else {
            format!(
                "no configuration set {name:?} in the config (it has {})",
                known.join(", ")
            )
        })
    }

    /// The base URL of the links in SNS messages: `[sns] public_url`, else
    /// `http://` + `[http] listen` (no trailing `/`).
    pub fn sns_public_url(&self) -> String {
        match &self.sns.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.http.listen),
        }
    }

    /// Every enabled destination with its set's name.
    pub fn enabled_destinations(&self) -> impl Iterator<Item = (&str, &Destination)> {
        self.configuration_sets.iter().flat_map(|(name, set)| {
            set.destinations
                .iter()
                .filter(|d| d.enabled)
                .map(move |d| (name.as_str(), d))
        })
    }

    /// Checks set names and the default; the key and reason on failure.
    pub(super) fn check_sets(&self) -> Result<(), (String, String)> {
        for (name, set) in &self.configuration_sets {
            let key = format!("configuration_sets.{name}");
            if !valid_name(name) {
                return Err((
                    key,
                    "a configuration set name is 1 to 64 letters, digits, '_' and '-'".into(),
                ));
            }
            if set.destinations.len() > MAX_PER_SET {
                return Err((
                    format!("{key}.destinations"),
                    format!("at most {MAX_PER_SET} destinations per configuration set (as SES)"),
                ));
            }
            for (i, d) in set.destinations.iter().enumerate() {
                let key = format!("{key}.destinations[{i}]");
                d.check().map_err(|(k, r)| (format!("{key}.{k}"), r))?;
                if set.destinations[..i].iter().any(|o| o.name == d.name) {
                    return Err((
                        format!("{key}.name"),
                        format!("{:?} names two destinations of the set", d.name),
                    ));
                }
            }
        }
        self.sns.check().map_err(|(k, r)| (format!("sns.{k}"), r))?;
        if let Some(d) = &self.events.default_configuration_set {
            self.configuration_set(Some(d))
                .map_err(|r| ("events.default_configuration_set".to_string(), r))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("c.toml"), Path::new(".")).map_err(|e| e.to_string())
    }

    #[test]
    fn sets_resolve_by_name_else_the_default() {
        let c = parse(
            "[events]\ndefault_configuration_set = \"main\"\n[configuration_sets.main]\n[configuration_sets.promo-2]\n",
        )
        .unwrap();
        assert_eq!(c.configuration_set(None), Ok(Some("main".into())));
        assert_eq!(
            c.configuration_set(Some("promo-2")),
            Ok(Some("promo-2".into()))
        );
        let e = c.configuration_set(Some("nope")).unwrap_err();
        assert!(e.contains("\"nope\"") && e.contains("main, promo-2"), "{e}");
        // no default, no sets: mail has none
        let c = parse("").unwrap();
        assert_eq!(c.configuration_set(None), Ok(None));
        assert!(
            c.configuration_set(Some("x"))
                .unwrap_err()
                .contains("defines none")
        );
    }

    #[test]
    fn bad_names_unknown_defaults_and_unknown_keys_are_refused() {
        let e = parse("[configuration_sets.\"a b\"]\n").unwrap_err();
        assert!(
            e.contains("configuration_sets.a b") && e.contains("64 letters"),
            "{e}"
        );
        let e =
            parse("[events]\ndefault_configuration_set = \"gone\"\n[configuration_sets.main]\n")
                .unwrap_err();
        assert!(
            e.contains("events.default_configuration_set") && e.contains("\"gone\""),
            "{e}"
        );
        let e = parse("[configuration_sets.main]\ncolour = 1\n").unwrap_err();
        assert!(e.contains("colour"), "{e}");
        assert!(valid_name(&"a".repeat(64)) && !valid_name(&"a".repeat(65)));
    }

    const DESTS: &str = r#"
[configuration_sets.main]
[[configuration_sets.main.destinations]]
name = "bounces"
event_types = ["BOUNCE", "Complaint", "Rendering Failure", "delivery_delay"]
tags = { campaign = ["newsletter", "digest"], team = "growth" }
webhook = { url = "http://127.0.0.1:9/hook", format = "raw", headers = { Authorization = "Bearer x" } }
[[configuration_sets.main.destinations]]
name = "all"
enabled = false
replay = true
event_types = ["Send", "Delivery"]
jsonl = { path = "out/all.jsonl" }
"#;

    #[test]
    fn destinations_parse_with_their_kinds_filters_and_defaults() {
        let c = Config::parse(DESTS, Path::new("c.toml"), Path::new("/etc/volley")).unwrap();
        let ds = &c.configuration_sets["main"].destinations;
        assert_eq!(ds.len(), 2);
        let b = &ds[0];
        assert!(b.enabled && !b.replay);
        assert_eq!(b.kind().name(), "webhook");
        for t in ["Bounce", "Complaint", "Rendering Failure", "DeliveryDelay"] {
            assert!(b.matches_type(t), "{t}");
        }
        assert!(!b.matches_type("Delivery") && !b.matches_type("Send"));
        let tags = |c: &str, t: &str| {
            BTreeMap::from([
                ("campaign".to_string(), vec![c.to_string()]),
                ("team".to_string(), vec![t.to_string()]),
            ])
        };
        assert!(b.matches_tags(&tags("digest", "growth")));
        assert!(!b.matches_tags(&tags("promo", "growth")));
        assert!(!b.matches_tags(&tags("digest", "ops")));
        assert!(!b.matches_tags(&BTreeMap::new()));
        let w = b.webhook.as_ref().unwrap();
        assert_eq!(w.format, crate::config::EventFormat::Raw);
        assert_eq!((w.concurrency, w.timeout.as_secs()), (8, 10));
        // the dead-letter file defaults beside the events file
        assert_eq!(
            w.dead_letter.as_deref(),
            Some(Path::new("/etc/volley/var/dead-letter/main.bounces.jsonl"))
        );
        let a = &ds[1];
        assert!(!a.enabled && a.replay && a.matches_tags(&BTreeMap::new()));
        assert_eq!(
            a.jsonl.as_ref().unwrap().path,
            Path::new("/etc/volley/out/all.jsonl")
        );
        // only enabled destinations run
        let on: Vec<_> = c
            .enabled_destinations()
            .map(|(s, d)| (s, d.name.as_str()))
            .collect();
        assert_eq!(on, vec![("main", "bounces")]);
        assert_eq!(c.sns_public_url(), "http://127.0.0.1:8025");
    }

    #[test]
    fn amqp_destinations_parse_with_defaults() {
        let text = "[configuration_sets.main]\n[[configuration_sets.main.destinations]]\nname = \"q\"\nevent_types = [\"Bounce\"]\namqp = { url = \"amqp://guest:guest@127.0.0.1:5672/%2f\" }\n";
        let c = Config::parse(text, Path::new("c.toml"), Path::new("/etc/volley")).unwrap();
        let d = &c.configuration_sets["main"].destinations[0];
        assert_eq!(d.kind().name(), "amqp");
        let a = d.amqp.as_ref().unwrap();
        assert_eq!(a.exchange, "volley-events");
        assert_eq!(a.routing_key, "{configuration_set}.{event_type}");
        assert_eq!(a.format, crate::config::EventFormat::Sns);
        assert_eq!(
            a.dead_letter.as_deref(),
            Some(Path::new("/etc/volley/var/dead-letter/main.q.jsonl"))
        );
        let e = parse(&text.replace("amqp://guest", "http://guest")).unwrap_err();
        assert!(e.contains("destinations[0].amqp.url"), "{e}");
        let e = parse(&text.replace("amqp = {", "jsonl = { path = \"x\" }\namqp = {")).unwrap_err();
        assert!(e.contains("one kind"), "{e}");
    }

    #[test]
    fn bad_destinations_are_refused_with_their_key() {
        let cases = [
            (
                DESTS.replace("\"BOUNCE\"", "\"Bonce\""),
                "unknown event type \"Bonce\"",
            ),
            (
                DESTS.replace("name = \"all\"", "name = \"bounces\""),
                "destinations[1].name",
            ),
            (
                DESTS.replace("jsonl = {", "colour = 1\njsonl = {"),
                "colour",
            ),
            (
                DESTS.replace("jsonl = { path = \"out/all.jsonl\" }", ""),
                "destinations[1].kind",
            ),
            (
                DESTS.replace("http://127.0.0.1:9/hook", "ftp://x"),
                "destinations[0].webhook.url",
            ),
            (
                DESTS.replace("format = \"raw\"", "concurrency = 0"),
                "webhook.concurrency",
            ),
            (
                DESTS.replace("event_types = [\"Send\", \"Delivery\"]", "event_types = []"),
                "destinations[1].event_types",
            ),
            (
                DESTS.replace("team = \"growth\"", "team = []"),
                "destinations[0].tags.team",
            ),
            (
                format!("{DESTS}\n[sns]\nsigning_key = \"k.pem\"\n"),
                "sns.signing_key",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
        let many: String = (0..11)
            .map(|i| format!("[[configuration_sets.main.destinations]]\nname = \"d{i}\"\nevent_types = [\"Send\"]\njsonl = {{ path = \"{i}\" }}\n"))
            .collect();
        let e = parse(&format!("[configuration_sets.main]\n{many}")).unwrap_err();
        assert!(e.contains("at most 10"), "{e}");
    }
}
