//! Exposition formats of `GET /metrics` and how a scraper picks one.
//!
//! Two formats, both from the same registry: OpenMetrics 1.0.0 text
//! (`application/openmetrics-text`) when the `Accept` header prefers it, as
//! Prometheus's does; otherwise the Prometheus text format 0.0.4
//! (`text/plain`), which is also the answer to no `Accept` header, to
//! `*/*`, and to anything this server cannot give. Pure. Exposure: the
//! `Accept` header is client input; any value picks one of the two formats.

use prometheus_client::registry::Registry;

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text (ends with `# EOF`).
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// Encodes `registry` in this format.
    pub(super) fn encode(self, registry: &Registry) -> String {
        let mut out = String::new();
        // writing to a String cannot fail
        let _ = match self {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry),
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, registry)
            }
        };
        out
    }
}

/// The format to answer a request whose `Accept` header is `accept`:
/// OpenMetrics when it is acceptable with a higher quality than the
/// Prometheus text format (ties go to the text format), else the text
/// format.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok())
            .filter(|q| q.is_finite())
            .unwrap_or(0.0)
            .clamp(0.0, 1.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    if openmetrics > 0.0 && openmetrics > text {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_preferred_format() {
        let cases = [
            (None, Format::Text),
            (Some(""), Format::Text),
            (Some("*/*"), Format::Text),
            (Some("text/plain;version=0.0.4"), Format::Text),
            (
                Some("text/plain; version=0.0.4; charset=utf-8"),
                Format::Text,
            ),
            // Prometheus 2.x
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                Format::OpenMetrics,
            ),
            // Prometheus 3.x
            (
                Some(
                    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                ),
                Format::OpenMetrics,
            ),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                Some("Application/OpenMetrics-Text; Q=0.9"),
                Format::OpenMetrics,
            ),
            // the text format preferred, or equal
            (
                Some("application/openmetrics-text;q=0.5,text/plain;q=0.9"),
                Format::Text,
            ),
            (
                Some("application/openmetrics-text;q=0.5,*/*;q=0.5"),
                Format::Text,
            ),
            // refused, or nonsense
            (Some("application/openmetrics-text;q=0"), Format::Text),
            (Some("application/openmetrics-text;q=abc"), Format::Text),
            (Some("application/openmetrics-text;q=NaN"), Format::Text),
            (Some("application/json"), Format::Text),
            (Some(";;,,=;q=,"), Format::Text),
        ];
        for (accept, want) in cases {
            assert_eq!(negotiate(accept), want, "Accept: {accept:?}");
        }
    }

    #[test]
    fn content_types_name_the_format() {
        assert!(
            Format::OpenMetrics
                .content_type()
                .starts_with("application/openmetrics-text; version=1.0.0")
        );
        assert_eq!(
            Format::Text.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }
}
