//! Campaign templates: Handlebars with SES semantics, compiled once.
//!
//! Strict mode (a missing `{{var}}` is an error naming the attribute, as SES
//! reports it), no HTML escaping (SES does not escape), inline partials
//! supported. `render` takes the recipient's variables and yields the subject,
//! bodies and unsubscribe URL, or a [`RenderFailure`] whose message becomes
//! the `Rendering Failure` event. Pure: no I/O. Exposure: templates are
//! operator input and variables come from recipient lists; both can only
//! produce errors, never panics, and rendered header values are checked for
//! line breaks by the MIME builder.

use handlebars::{Context, Handlebars, RenderErrorReason};

use crate::campaign::CampaignDef;

/// A template that does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Which campaign key holds it (`subject`, `html`, `text`, `list_unsubscribe`).
    pub part: &'static str,
    pub message: String,
}

/// Why a recipient's message could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderFailure {
    pub message: String,
    /// The rendered subject, when the subject rendered and another part
    /// failed.
    pub subject: Option<String>,
}

/// The rendered parts of one recipient's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
    pub list_unsubscribe: Option<String>,
}

/// The compiled templates of one campaign.
pub struct Templates {
    hb: Handlebars<'static>,
    parts: Vec<&'static str>,
}

impl Templates {
    /// Compiles every template of the campaign.
    pub fn compile(def: &CampaignDef) -> Result<Templates, TemplateError> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        let mut parts = Vec::new();
        let sources = [
            ("subject", Some(&def.subject)),
            ("html", def.html.as_ref()),
            ("text", def.text.as_ref()),
            ("list_unsubscribe", def.list_unsubscribe.as_ref()),
        ];
        for (part, src) in sources {
            if let Some(src) = src {
                hb.register_template_string(part, src)
                    .map_err(|e| TemplateError {
                        part,
                        message: e.to_string(),
                    })?;
                parts.push(part);
            }
        }
        Ok(Templates { hb, parts })
    }

    fn has(&self, part: &str) -> bool {
        self.parts.contains(&part)
    }

    fn one(&self, part: &'static str, ctx: &Context) -> Result<String, RenderFailure> {
        self.hb.render_with_context(part, ctx).map_err(|e| {
            let place = match (e.line_no, e.column_no) {
                (Some(l), Some(c)) => format!(" ({part} template, line {l}, column {c})"),
                _ => format!(" ({part} template)"),
            };
            let message = match e.reason() {
                RenderErrorReason::MissingVariable(Some(name)) => {
                    format!("Attribute '{name}' is not present in the rendering data.{place}")
                }
                other => format!("{other}{place}"),
            };
            RenderFailure {
                message,
                subject: None,
            }
        })
    }

    /// Renders every part for one recipient's variables.
    pub fn render(&self, vars: serde_json::Value) -> Result<Rendered, RenderFailure> {
        let ctx = Context::from(vars);
        let opt = |part: &'static str| -> Result<Option<String>, RenderFailure> {
            if self.has(part) {
                self.one(part, &ctx).map(Some)
            } else {
                Ok(None)
            }
        };
        let subject = self.one("subject", &ctx)?.replace(['\r', '\n'], " ");
        let with_subject = |e: RenderFailure| RenderFailure {
            subject: Some(subject.clone()),
            ..e
        };
        let html = opt("html").map_err(with_subject)?;
        let text = opt("text").map_err(with_subject)?;
        let list_unsubscribe = opt("list_unsubscribe").map_err(with_subject)?;
        Ok(Rendered {
            subject,
            html,
            text,
            list_unsubscribe,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(subject: &str, html: &str) -> CampaignDef {
        CampaignDef {
            id: "t".into(),
            from: "a@b.test".into(),
            from_name: None,
            from_addr: "a@b.test".into(),
            reply_to: None,
            subject: subject.into(),
            html: Some(html.into()),
            text: None,
            list_unsubscribe: Some("https://u.test/{{email}}".into()),
            tags: Default::default(),
            columns: vec![],
            personalized: true,
            to: None,
        }
    }

    #[test]
    fn renders_ses_style() {
        let t = Templates::compile(&def(
            "Hi {{name}}",
            "{{#* inline \"sig\"}}-- {{team}}{{/inline}}<p>{{name}} & {{#each items}}{{this}},{{/each}}</p>{{> sig}}{{#if vip}}VIP{{/if}}",
        ))
        .unwrap();
        let r = t
            .render(json!({"name": "<Ada>", "team": "Q", "items": [1, 2], "email": "a@x.test"}))
            .unwrap();
        assert_eq!(r.subject, "Hi <Ada>");
        assert_eq!(r.html.unwrap(), "<p><Ada> & 1,2,</p>-- Q");
        assert_eq!(r.list_unsubscribe.unwrap(), "https://u.test/a@x.test");
    }

    #[test]
    fn missing_variable_is_named() {
        let t = Templates::compile(&def("Hi", "<p>\n{{first_name}}</p>")).unwrap();
        let e = t.render(json!({"email": "a@x.test"})).unwrap_err();
        assert!(
            e.message
                .starts_with("Attribute 'first_name' is not present in the rendering data."),
            "{}",
            e.message
        );
        assert!(e.message.contains("html template, line 2"), "{}", e.message);
        // the subject rendered: the failure carries it
        assert_eq!(e.subject.as_deref(), Some("Hi"));
        let t = Templates::compile(&def("Hi {{first_name}}", "x")).unwrap();
        let e = t.render(json!({"email": "a@x.test"})).unwrap_err();
        assert_eq!(e.subject, None);
    }

    #[test]
    fn syntax_errors_name_the_part() {
        let e = Templates::compile(&def("Hi {{name", "x")).err().unwrap();
        assert_eq!(e.part, "subject");
    }

    #[test]
    fn subject_line_breaks_are_flattened() {
        let t = Templates::compile(&def("{{s}}", "x")).unwrap();
        let r = t
            .render(json!({"s": "a\r\nBcc: x@y.test", "email": "e"}))
            .unwrap();
        assert!(!r.subject.contains('\n'));
    }
}
