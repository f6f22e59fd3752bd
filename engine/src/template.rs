//! Campaign templates: Handlebars with SES semantics, compiled once.
//!
//! Compiling also checks what can be known before any recipient (see
//! [`check`]): a template that would fail for every recipient who reaches
//! it (a partial never defined, a helper missing its parameters, an unknown
//! helper) is a [`TemplateError`], as a syntax error is. Strict mode (a missing `{{var}}` is an error naming the attribute, as SES
//! reports it), no HTML escaping (SES does not escape), inline partials
//! supported. `render` takes the recipient's variables and yields the subject,
//! bodies and unsubscribe URL, or a [`RenderFailure`] whose message becomes
//! the `Rendering Failure` event. Pure: no I/O. Exposure: templates are
//! operator input and variables come from recipient lists; both can only
//! produce errors, never panics, and rendered header values are checked for
//! line breaks by the MIME builder.

mod check;
mod plan;

use handlebars::{Context, Handlebars, RenderErrorReason};

/// A template that does not compile, or can never render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Which campaign key holds it (`subject`, `html`, `text`, `list_unsubscribe`).
    pub part: &'static str,
    /// What is wrong, and where in the part (`line L, column C: ...`,
    /// counted from 1).
    pub message: String,
}

/// `line L, column C: what (at "...")`, quoting the start of the line.
fn located(src: &str, at: Option<(usize, usize)>, what: impl std::fmt::Display) -> String {
    let Some((line, column)) = at else {
        return what.to_string();
    };
    let text = src.lines().nth(line.saturating_sub(1)).unwrap_or("").trim();
    let shown: String = text.chars().take(60).collect();
    let more = if shown.len() < text.len() { "..." } else { "" };
    format!("line {line}, column {column}: {what} (at \"{shown}{more}\")")
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
    /// A `mailto:` unsubscribe address besides the URL (not a template:
    /// production adds Volley's own).
    pub list_unsubscribe_mailto: Option<String>,
}

/// The template sources of one campaign, by the campaign key that holds
/// each (`subject`, `html`, `text`, `list_unsubscribe`).
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub subject: &'a str,
    pub html: Option<&'a str>,
    pub text: Option<&'a str>,
    pub list_unsubscribe: Option<&'a str>,
}

/// A recipient's variables, wrapped in a Handlebars context only if a part
/// needs Handlebars.
struct Vars {
    value: serde_json::Value,
    context: std::cell::OnceCell<Context>,
}

impl Vars {
    fn new(value: serde_json::Value) -> Vars {
        Vars {
            value,
            context: std::cell::OnceCell::new(),
        }
    }

    fn map(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.value.as_object()
    }

    fn context(&self) -> &Context {
        self.context
            .get_or_init(|| Context::from(self.value.clone()))
    }
}

/// The compiled templates of one campaign.
pub struct Templates {
    hb: Handlebars<'static>,
    /// The parts present, each with its render plan when it has one.
    parts: Vec<(&'static str, Option<plan::Plan>)>,
}

impl Templates {
    /// Compiles every template of a campaign.
    pub fn compile(src: Sources<'_>) -> Result<Templates, TemplateError> {
        Templates::compile_with(src, false)
    }

    /// [`Templates::compile`] for a template from the network (the SES
    /// API): also within [`check::check_untrusted`]'s limits.
    pub fn compile_untrusted(src: Sources<'_>) -> Result<Templates, TemplateError> {
        Templates::compile_with(src, true)
    }

    fn compile_with(src: Sources<'_>, untrusted: bool) -> Result<Templates, TemplateError> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        let mut parts = Vec::new();
        let sources = [
            ("subject", Some(src.subject)),
            ("html", src.html),
            ("text", src.text),
            ("list_unsubscribe", src.list_unsubscribe),
        ];
        for (part, src) in sources {
            if let Some(src) = src {
                hb.register_template_string(part, src)
                    .map_err(|e| TemplateError {
                        part,
                        message: located(src, e.pos(), e.reason()),
                    })?;
                let mut fast = None;
                if let Some(t) = hb.get_template(part) {
                    check::check(t).map_err(|p| TemplateError {
                        part,
                        message: located(src, p.at, p.what),
                    })?;
                    if untrusted {
                        check::check_untrusted(t).map_err(|p| TemplateError {
                            part,
                            message: located(src, p.at, p.what),
                        })?;
                    }
                    fast = plan::plan(t, &check::is_helper);
                }
                parts.push((part, fast));
            }
        }
        Ok(Templates { hb, parts })
    }

    /// Whether the campaign has `part`, and its plan if it has one.
    fn part(&self, part: &str) -> Option<Option<&plan::Plan>> {
        self.parts
            .iter()
            .find(|(p, _)| *p == part)
            .map(|(_, plan)| plan.as_ref())
    }

    /// Renders `part` by its plan, or by Handlebars when it has none or
    /// the plan gives up on these variables.
    fn one(&self, part: &'static str, vars: &Vars) -> Result<String, RenderFailure> {
        if let Some(s) = self
            .part(part)
            .flatten()
            .zip(vars.map())
            .and_then(|(p, m)| p.render(m))
        {
            return Ok(s);
        }
        self.hb
            .render_with_context(part, vars.context())
            .map_err(|e| {
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
        let vars = Vars::new(vars);
        let opt = |part: &'static str| -> Result<Option<String>, RenderFailure> {
            match self.part(part) {
                Some(_) => self.one(part, &vars).map(Some),
                None => Ok(None),
            }
        };
        let subject = self.one("subject", &vars)?.replace(['\r', '\n'], " ");
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
            list_unsubscribe_mailto: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def<'a>(subject: &'a str, html: &'a str) -> Sources<'a> {
        Sources {
            subject,
            html: Some(html),
            text: None,
            list_unsubscribe: Some("https://u.test/{{email}}"),
        }
    }

    #[test]
    fn renders_ses_style() {
        let t = Templates::compile(def(
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
        let t = Templates::compile(def("Hi", "<p>\n{{first_name}}</p>")).unwrap();
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
        let t = Templates::compile(def("Hi {{first_name}}", "x")).unwrap();
        let e = t.render(json!({"email": "a@x.test"})).unwrap_err();
        assert_eq!(e.subject, None);
    }

    #[test]
    fn syntax_errors_name_the_part() {
        let e = Templates::compile(def("Hi {{name", "x")).err().unwrap();
        assert_eq!(e.part, "subject");
    }

    #[test]
    fn errors_count_lines_from_1() {
        let e = Templates::compile(def("Hi", "line1\n{{#if x}}\n{{/iff}}"))
            .err()
            .unwrap();
        assert_eq!(e.part, "html");
        assert!(
            e.message.starts_with("line 3, column 1: ")
                && e.message
                    .contains("\"if\" was opened, but \"iff\" is closing")
                && e.message.ends_with("(at \"{{/iff}}\")"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("0 |"), "{}", e.message);
        let e = Templates::compile(def("Hi", "one\ntwo {{> footer}}"))
            .err()
            .unwrap();
        assert!(e.message.starts_with("line 2, column 5: "), "{}", e.message);
    }

    fn data() -> serde_json::Value {
        json!({"email": "a@x.test", "x": 1, "b": 1, "name": "N", "items": [1, 2], "contact": {"first": "A"}})
    }

    /// Renders `src` as Handlebars does without the load check.
    fn render_unchecked(src: &str) -> Result<String, String> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_template_string("t", src)
            .map_err(|e| e.to_string())?;
        hb.render("t", &data()).map_err(|e| e.to_string())
    }

    #[test]
    fn templates_that_can_never_render_are_refused_at_load() {
        for (src, says) in [
            ("a {{> missing}} b", "partial `missing` is not defined"),
            ("{{#each}}x{{/each}}", "`{{#each}}` needs 1 parameter"),
            ("{{#if}}x{{/if}}", "`{{#if}}` needs 1 parameter"),
            ("{{#with}}x{{/with}}", "needs 1 parameter"),
            ("{{#unless}}x{{/unless}}", "needs 1 parameter"),
            ("{{#foo}}x{{/foo}}", "`foo` is not a block helper"),
            ("{{#foo x}}x{{/foo}}", "`foo` is not a block helper"),
            ("{{foo x}}", "unknown helper `foo`"),
            ("{{foo k=1}}", "unknown helper `foo`"),
            ("{{eq x}}", "needs 2 parameters"),
            ("{{lookup contact}}", "needs 2 parameters"),
            ("{{len}}", "needs 1 parameter"),
            ("{{#if (eq x)}}y{{/if}}", "needs 2 parameters"),
            ("{{#if (foo)}}y{{/if}}", "unknown helper `foo`"),
            (
                "{{#unless x}}{{else}}{{#each}}{{/each}}{{/unless}}",
                "`{{#each}}`",
            ),
            (
                "{{> p}}{{#*inline \"p\"}}P{{/inline}}",
                "used before its definition",
            ),
            (
                "{{#*inline \"p\"}}{{> q}}{{/inline}}{{> p}}",
                "partial `q` is not defined",
            ),
            ("{{#*inline}}x{{/inline}}", "needs the partial's name"),
            ("{{*foo}}", "unknown decorator `foo`"),
        ] {
            assert!(
                render_unchecked(src).is_err(),
                "{src} renders: not a template to refuse"
            );
            let e = Templates::compile(def("Hi", src))
                .err()
                .unwrap_or_else(|| panic!("{src} passed the check"));
            assert_eq!(e.part, "html");
            assert!(
                e.message.starts_with("line 1, column ") && e.message.contains(says),
                "{src}: {}",
                e.message
            );
        }
    }

    #[test]
    fn valid_ses_templates_pass_the_check() {
        for src in [
            "Hi {{name}}",
            "{{contact.first}} {{contact/first}} {{{name}}}",
            "{{#if x}}a{{else if b}}b{{else}}c{{/if}}",
            "{{#unless x}}a{{else}}b{{/unless}}",
            "{{#each items}}{{this}}{{@index}}{{@first}}{{../name}}{{else}}none{{/each}}",
            "{{#each items as |it i|}}{{it}}{{i}}{{/each}}",
            "{{#with contact}}{{first}}{{/with}}",
            "{{#*inline \"p\"}}P{{/inline}}{{> p}}{{#each items}}{{> p}}{{/each}}",
            "{{#*inline \"p\"}}P{{> q}}{{/inline}}{{#*inline \"q\"}}Q{{/inline}}{{> p}}",
            "{{#*inline \"p\"}}[{{> @partial-block}}]{{/inline}}{{#> p}}in{{/p}}",
            "{{#> layout}}fallback{{/layout}}",
            "{{#if x}}{{#*inline \"p\"}}P{{/inline}}{{/if}}{{> p}}",
            "{{#if (eq x 1)}}one{{/if}} {{lookup contact \"first\"}} {{#if (and x b)}}y{{/if}}",
            "{{!-- a comment --}}{{! another }}{{log name}}",
        ] {
            render_unchecked(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            let t = Templates::compile(def("Hi {{name}}", src))
                .unwrap_or_else(|e| panic!("{src}: {}", e.message));
            t.render(data()).unwrap();
        }
    }

    #[test]
    fn subject_line_breaks_are_flattened() {
        let t = Templates::compile(def("{{s}}", "x")).unwrap();
        let r = t
            .render(json!({"s": "a\r\nBcc: x@y.test", "email": "e"}))
            .unwrap();
        assert!(!r.subject.contains('\n'));
    }
}
