//! Configuration sets (SES): named sets in the config, the one a campaign
//! names or the default, and the name every event of its mail carries
//! (`mail.tags["ses:configuration-set"]`). A set's event destinations are
//! configured with it (see the README's Events section). Pure.

use serde::Deserialize;

use super::Config;

/// One configuration set (`[configuration_sets.NAME]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigurationSet {}

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

    /// Checks set names and the default; the key and reason on failure.
    pub(super) fn check_sets(&self) -> Result<(), (String, String)> {
        for name in self.configuration_sets.keys() {
            if !valid_name(name) {
                return Err((
                    format!("configuration_sets.{name}"),
                    "a configuration set name is 1 to 64 letters, digits, '_' and '-'".into(),
                ));
            }
        }
        if let Some(d) = &self.events.default_configuration_set {
            self.configuration_set(Some(d))
                .map_err(|r| ("events.default_configuration_set".to_string(), r))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
}
