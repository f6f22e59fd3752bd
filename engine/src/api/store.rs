//! The API's email templates, stored durably with the spool
//! (`<spool>/templates/<name>.json`, each written to a temporary file,
//! synced, renamed and its directory synced) and held in memory, each
//! compiled once ([`crate::template::Templates`]) when first used.
//!
//! Names: 1–64 letters, digits, `_` and `-` (they are file names); content
//! at most 500 KB (SES's limit). Files that do not parse are reported at
//! open and left where they are. Exposure: names and content come from
//! the network (authenticated callers).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Serialize};

use crate::template::{Sources, Templates};

/// Largest template (subject + text + html), as SES.
pub const MAX_TEMPLATE_BYTES: usize = 500 * 1024;
/// Most templates (SES: 10,000 per region in the 2022 guide).
pub const MAX_TEMPLATES: usize = 10_000;

/// A template's content (SES `EmailTemplateContent`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Content {
    #[serde(rename = "Subject", default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(rename = "Text", default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(rename = "Html", default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

impl Content {
    /// Compiles it; the error names the part and place.
    pub fn compile(&self) -> Result<Templates, String> {
        Templates::compile_untrusted(Sources {
            subject: self.subject.as_deref().unwrap_or(""),
            html: self.html.as_deref(),
            text: self.text.as_deref(),
            list_unsubscribe: None,
        })
        .map_err(|e| format!("{} template: {}", e.part, e.message))
    }

    /// Checks size and that at least a body or subject is there.
    pub fn check(&self) -> Result<(), String> {
        let n = [&self.subject, &self.text, &self.html]
            .iter()
            .filter_map(|p| p.as_ref())
            .map(String::len)
            .sum::<usize>();
        if n > MAX_TEMPLATE_BYTES {
            return Err(format!(
                "TemplateContent is {n} bytes; the limit is {MAX_TEMPLATE_BYTES}"
            ));
        }
        if self.text.is_none() && self.html.is_none() && self.subject.is_none() {
            return Err("TemplateContent needs a Subject, Text or Html".into());
        }
        Ok(())
    }
}

/// A stored template.
#[derive(Serialize, Deserialize)]
pub struct Stored {
    #[serde(rename = "TemplateName")]
    pub name: String,
    #[serde(rename = "TemplateContent")]
    pub content: Content,
    /// Seconds since the epoch.
    #[serde(rename = "CreatedTimestamp")]
    pub created_s: f64,
    #[serde(skip)]
    compiled: OnceLock<Result<Arc<Templates>, String>>,
}

impl Stored {
    /// Its compiled form (compiled on first use).
    pub fn compiled(&self) -> Result<Arc<Templates>, String> {
        self.compiled
            .get_or_init(|| self.content.compile().map(Arc::new))
            .clone()
    }
}

/// Whether `name` is a valid template name.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match ok {
        true => Ok(()),
        false => Err(format!(
            "TemplateName {name:?}: 1-64 letters, digits, underscores and hyphens"
        )),
    }
}

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Template {0} already exists.")]
    Exists(String),
    #[error("Template {0} does not exist.")]
    Missing(String),
    #[error("{0}")]
    Invalid(String),
    #[error("there are {MAX_TEMPLATES} templates already; delete some first")]
    Full,
    #[error("the template store failed: {0}")]
    Io(String),
}

/// The templates, by name.
pub struct TemplateStore {
    dir: PathBuf,
    map: RwLock<BTreeMap<String, Arc<Stored>>>,
    /// Serializes writers (a create and a delete of one name).
    write: std::sync::Mutex<()>,
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

impl TemplateStore {
    /// Opens (creating) `dir` and reads every template in it.
    pub fn open(dir: &Path) -> Result<TemplateStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut map = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Stored>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(t) if check_name(&t.name).is_ok() => {
                    map.insert(t.name.clone(), Arc::new(t));
                }
                Ok(t) => {
                    tracing::warn!(file = %path.display(), name = %t.name, "template file with an invalid name: ignored")
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "unreadable template file: ignored")
                }
            }
        }
        Ok(TemplateStore {
            dir: dir.to_path_buf(),
            map: RwLock::new(map),
            write: std::sync::Mutex::new(()),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// How many templates there are.
    fn count(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Stored>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Up to `n` templates after `after` (by name).
    pub fn page(&self, after: Option<&str>, n: usize) -> (Vec<Arc<Stored>>, bool) {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let mut it: Box<dyn Iterator<Item = &Arc<Stored>>> = match after {
            Some(a) => Box::new(
                map.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                    .map(|(_, v)| v),
            ),
            None => Box::new(map.values()),
        };
        let page: Vec<Arc<Stored>> = it.by_ref().take(n).cloned().collect();
        let more = it.next().is_some();
        (page, more)
    }

    /// Creates (`replace` false) or updates (`replace` true) a template,
    /// durably.
    pub fn put(
        &self,
        name: &str,
        content: Content,
        replace: bool,
        now_s: f64,
    ) -> Result<(), StoreError> {
        check_name(name).map_err(StoreError::Invalid)?;
        content.check().map_err(StoreError::Invalid)?;
        let compiled = content.compile().map_err(StoreError::Invalid)?;
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.get(name);
        let created_s = match (&old, replace) {
            (Some(_), false) => return Err(StoreError::Exists(name.into())),
            (None, true) => return Err(StoreError::Missing(name.into())),
            (Some(o), true) => o.created_s,
            (None, false) if self.count() >= MAX_TEMPLATES => return Err(StoreError::Full),
            (None, false) => now_s,
        };
        let t = Stored {
            name: name.to_string(),
            content,
            created_s,
            compiled: OnceLock::from(Ok(Arc::new(compiled))),
        };
        let bytes = serde_json::to_vec(&t).map_err(|e| StoreError::Io(e.to_string()))?;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, self.path(name)).map_err(io)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), Arc::new(t));
        Ok(())
    }

    /// Deletes a template, durably.
    pub fn delete(&self, name: &str) -> Result<(), StoreError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        if self.get(name).is_none() {
            return Err(StoreError::Missing(name.into()));
        }
        std::fs::remove_file(self.path(name)).map_err(io)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(subject: &str) -> Content {
        Content {
            subject: Some(subject.into()),
            text: Some("Hi {{name}}".into()),
            html: None,
        }
    }

    #[test]
    fn survives_reopening_and_pages_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = TemplateStore::open(dir.path()).unwrap();
        for n in ["b", "a", "c"] {
            s.put(n, content(n), false, 1.0).unwrap();
        }
        assert!(matches!(
            s.put("a", content("x"), false, 2.0),
            Err(StoreError::Exists(_))
        ));
        assert!(matches!(
            s.put("z", content("x"), true, 2.0),
            Err(StoreError::Missing(_))
        ));
        s.put("a", content("new"), true, 3.0).unwrap();
        s.delete("c").unwrap();
        assert!(matches!(s.delete("c"), Err(StoreError::Missing(_))));
        assert!(matches!(
            s.put("bad name", content("x"), false, 1.0),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.put("broken", content("{{#if}}"), false, 1.0),
            Err(StoreError::Invalid(_))
        ));
        std::fs::write(dir.path().join("junk.json"), b"{not json").unwrap();
        let s = TemplateStore::open(dir.path()).unwrap();
        let a = s.get("a").unwrap();
        assert_eq!(a.content.subject.as_deref(), Some("new"));
        assert_eq!(a.created_s, 1.0);
        let (page, more) = s.page(None, 1);
        assert_eq!((page[0].name.as_str(), more), ("a", true));
        let (page, more) = s.page(Some("a"), 5);
        assert_eq!((page.len(), page[0].name.as_str(), more), (1, "b", false));
        assert!(a.compiled().is_ok());
        // from the network: no partial cycles, no nested #each
        let cyclic = "{{#*inline \"q\"}}x{{/inline}}{{#*inline \"p\"}}{{> q}}{{/inline}}{{#*inline \"q\"}}{{> p}}{{/inline}}{{> p}}";
        let nested = "{{#each a}}{{#each a}}x{{/each}}{{/each}}";
        for bad in [cyclic, nested] {
            let c = Content {
                subject: Some("s".into()),
                text: Some(bad.into()),
                html: None,
            };
            assert!(c.compile().is_err(), "{bad}");
        }
    }
}
