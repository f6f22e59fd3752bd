//! What can be known about a compiled template before any recipient: the
//! mistakes that make it fail for every recipient who reaches them, found
//! by walking its elements (blocks, their `else` branches, inline partials
//! and subexpressions included):
//!
//! - a partial that is not defined inline in the same template, or is used
//!   before its definition (`{{> footer}}`); a partial block
//!   (`{{#> footer}}fallback{{/footer}}`) and `{{> @partial-block}}` are
//!   fine;
//! - a helper the engine does not have (`{{#loop items}}`, `{{upper name}}`),
//!   a block on a name that is not a helper (`{{#name}}`), a decorator other
//!   than `inline`;
//! - a helper without the parameters it requires (`{{#each}}`,
//!   `{{#if}}`, `{{eq a}}`).
//!
//! Valid SES templates pass: variables and dotted paths, `#if`/`#unless`/
//! `#each`/`#with` with `else` and `else if`, block parameters, inline
//! partials (also used inside blocks and other partials). Pure.

use std::collections::HashSet;

use handlebars::template::{
    DecoratorTemplate, HelperTemplate, Parameter, Template, TemplateElement, TemplateMapping,
};

/// The helpers the engine registers (Handlebars' built-ins), with how many
/// parameters each requires.
const HELPERS: &[(&str, usize)] = &[
    ("if", 1),
    ("unless", 1),
    ("each", 1),
    ("with", 1),
    ("lookup", 2),
    ("raw", 0),
    ("log", 0),
    ("eq", 2),
    ("ne", 2),
    ("gt", 2),
    ("gte", 2),
    ("lt", 2),
    ("lte", 2),
    ("and", 0),
    ("or", 0),
    ("not", 1),
    ("len", 1),
];

/// Whether Handlebars calls `name` as a helper (so `{{name}}` is a
/// helper call, not a variable).
pub(super) fn is_helper(name: &str) -> bool {
    HELPERS.iter().any(|(n, _)| *n == name)
}

/// A mistake and where it is (line and column from 1, when known).
pub(super) struct Problem {
    pub at: Option<(usize, usize)>,
    pub what: String,
}

/// Checks a compiled template.
pub(super) fn check(t: &Template) -> Result<(), Problem> {
    let mut all = HashSet::new();
    let mut dynamic = false;
    collect_inline(t, &mut all, &mut dynamic);
    let mut walk = Walk {
        defined: HashSet::new(),
        all,
        dynamic,
        in_partial: 0,
    };
    walk.template(t)
}

/// Names of the inline partials defined anywhere in `t`; `dynamic` is set
/// when one is named by an expression rather than a string.
fn collect_inline(t: &Template, names: &mut HashSet<String>, dynamic: &mut bool) {
    for e in &t.elements {
        match e {
            TemplateElement::DecoratorBlock(d) | TemplateElement::DecoratorExpression(d) => {
                match inline_name(d) {
                    Some(n) => {
                        names.insert(n.to_string());
                    }
                    None => *dynamic |= is_name(&d.name, "inline"),
                }
                if let Some(t) = &d.template {
                    collect_inline(t, names, dynamic);
                }
            }
            TemplateElement::HelperBlock(h) => {
                for t in [&h.template, &h.inverse].into_iter().flatten() {
                    collect_inline(t, names, dynamic);
                }
            }
            TemplateElement::PartialBlock(d) => {
                if let Some(t) = &d.template {
                    collect_inline(t, names, dynamic);
                }
            }
            _ => {}
        }
    }
}

fn is_name(p: &Parameter, name: &str) -> bool {
    p.as_name() == Some(name)
}

/// The name `{{#*inline "name"}}` defines.
fn inline_name(d: &DecoratorTemplate) -> Option<&str> {
    if !is_name(&d.name, "inline") {
        return None;
    }
    match d.params.first() {
        Some(Parameter::Literal(serde_json::Value::String(s))) => Some(s),
        _ => None,
    }
}

struct Walk {
    /// Inline partials defined so far (in document order).
    defined: HashSet<String>,
    /// Inline partials defined anywhere in the template.
    all: HashSet<String>,
    /// An inline partial is named by an expression: partial names cannot be
    /// checked.
    dynamic: bool,
    /// Depth inside inline partial bodies (rendered when used, by which
    /// time every definition before the use has been seen).
    in_partial: usize,
}

fn problem(what: String) -> Problem {
    Problem { at: None, what }
}

impl Walk {
    fn template(&mut self, t: &Template) -> Result<(), Problem> {
        for (i, e) in t.elements.iter().enumerate() {
            self.element(e).map_err(|mut p| {
                if p.at.is_none() {
                    p.at = t.mapping.get(i).map(|m: &TemplateMapping| (m.0, m.1));
                }
                p
            })?;
        }
        Ok(())
    }

    fn element(&mut self, e: &TemplateElement) -> Result<(), Problem> {
        match e {
            TemplateElement::RawString(_) | TemplateElement::Comment(_) => Ok(()),
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                self.helper(h, false)
            }
            TemplateElement::HelperBlock(h) => {
                self.helper(h, true)?;
                for t in [&h.template, &h.inverse].into_iter().flatten() {
                    self.template(t)?;
                }
                Ok(())
            }
            TemplateElement::DecoratorExpression(d) | TemplateElement::DecoratorBlock(d) => {
                self.decorator(d)
            }
            TemplateElement::PartialExpression(d) => {
                self.params(&d.params, &d.hash)?;
                self.partial(d)
            }
            TemplateElement::PartialBlock(d) => {
                // without the partial, its block renders instead
                self.params(&d.params, &d.hash)?;
                match &d.template {
                    Some(t) => self.template(t),
                    None => Ok(()),
                }
            }
            // elements of later Handlebars versions: not checked
            _ => Ok(()),
        }
    }

    fn decorator(&mut self, d: &DecoratorTemplate) -> Result<(), Problem> {
        let name = d.name.as_name().unwrap_or("(an expression)");
        if name != "inline" {
            return Err(problem(format!(
                "unknown decorator `{name}` (only `{{{{#*inline \"name\"}}}}` is supported)"
            )));
        }
        if d.params.is_empty() {
            return Err(problem(
                "`{{#*inline}}` needs the partial's name: `{{#*inline \"name\"}}`".into(),
            ));
        }
        if let Some(t) = &d.template {
            self.in_partial += 1;
            let r = self.template(t);
            self.in_partial -= 1;
            r?;
        }
        if let Some(n) = inline_name(d) {
            self.defined.insert(n.to_string());
        }
        Ok(())
    }

    fn partial(&self, d: &DecoratorTemplate) -> Result<(), Problem> {
        let Some(name) = d.name.as_name() else {
            return Ok(());
        };
        if name.starts_with('@') || self.dynamic || self.defined.contains(name) {
            return Ok(());
        }
        if self.in_partial > 0 && self.all.contains(name) {
            return Ok(());
        }
        let what = if self.all.contains(name) {
            format!(
                "partial `{name}` is used before its definition: move {{{{#*inline \"{name}\"}}}} above its first use"
            )
        } else {
            format!(
                "partial `{name}` is not defined: partials are defined in the same template with {{{{#*inline \"{name}\"}}}}...{{{{/inline}}}}"
            )
        };
        Err(problem(what))
    }

    /// A helper call, or a plain `{{name}}` (a variable unless `name` is a
    /// helper).
    fn helper(&mut self, h: &HelperTemplate, block: bool) -> Result<(), Problem> {
        self.params(&h.params, &h.hash)?;
        let Some(name) = h.name.as_name() else {
            return Ok(());
        };
        let known = HELPERS.iter().find(|(n, _)| *n == name);
        match known {
            Some(&(_, required)) if h.params.len() < required => {
                let (open, e) = if block {
                    (
                        "#",
                        format!("{{{{#{name} {}}}}}...{{{{/{name}}}}}", example(name)),
                    )
                } else {
                    ("", format!("{{{{{name} {}}}}}", example(name)))
                };
                Err(problem(format!(
                    "`{{{{{open}{name}}}}}` needs {required} parameter{}, e.g. `{e}`",
                    if required == 1 { "" } else { "s" }
                )))
            }
            Some(_) => Ok(()),
            None if block => Err(problem(format!(
                "`{{{{#{name}}}}}`: `{name}` is not a block helper (the helpers are {})",
                helper_names()
            ))),
            None if !h.params.is_empty() || !h.hash.is_empty() => Err(problem(format!(
                "unknown helper `{name}` (the helpers are {})",
                helper_names()
            ))),
            // a variable
            None => Ok(()),
        }
    }

    /// Subexpressions among parameters are helper calls too.
    fn params(
        &mut self,
        params: &[Parameter],
        hash: &std::collections::HashMap<String, Parameter>,
    ) -> Result<(), Problem> {
        for p in params.iter().chain(hash.values()) {
            if let Parameter::Subexpression(s) = p
                && let TemplateElement::Expression(h) = s.as_element()
            {
                // `(name)` alone is a helper call as well
                if h.params.is_empty()
                    && h.hash.is_empty()
                    && let Some(name) = h.name.as_name()
                    && !HELPERS.iter().any(|(n, _)| *n == name)
                {
                    return Err(problem(format!(
                        "unknown helper `{name}` in a subexpression (the helpers are {})",
                        helper_names()
                    )));
                }
                self.helper(h, false)?;
            }
        }
        Ok(())
    }
}

/// Parameters to show in an example of `name`'s use.
fn example(name: &str) -> &'static str {
    match name {
        "each" => "items",
        "with" => "contact",
        "lookup" => "object key",
        "if" | "unless" | "not" | "len" => "value",
        _ => "a b",
    }
}

fn helper_names() -> String {
    HELPERS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The limits of a template from the network (the SES API), on top of
/// [`check`]: no partial used inside an inline partial (so partials cannot
/// call each other in a cycle), no partial named by an expression, and no
/// `#each` inside another `#each` or inside an inline partial (so the work
/// of a render grows with the data's size, not a power of it).
pub(super) fn check_untrusted(t: &Template) -> Result<(), Problem> {
    untrusted(t, 0, false)
}

fn untrusted(t: &Template, each_depth: usize, in_partial: bool) -> Result<(), Problem> {
    for (i, e) in t.elements.iter().enumerate() {
        untrusted_element(e, each_depth, in_partial).map_err(|mut p| {
            if p.at.is_none() {
                p.at = t.mapping.get(i).map(|m: &TemplateMapping| (m.0, m.1));
            }
            p
        })?;
    }
    Ok(())
}

fn untrusted_element(
    e: &TemplateElement,
    each_depth: usize,
    in_partial: bool,
) -> Result<(), Problem> {
    match e {
        TemplateElement::HelperBlock(h) => {
            let each = h.name.as_name() == Some("each");
            if each && (each_depth > 0 || in_partial) {
                return Err(problem(
                    "`{{#each}}` inside another `{{#each}}` or an inline partial is not accepted from the API"
                        .into(),
                ));
            }
            for t in [&h.template, &h.inverse].into_iter().flatten() {
                untrusted(t, each_depth + usize::from(each), in_partial)?;
            }
            Ok(())
        }
        TemplateElement::DecoratorBlock(d) | TemplateElement::DecoratorExpression(d) => {
            match &d.template {
                Some(t) => untrusted(t, each_depth, true),
                None => Ok(()),
            }
        }
        TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
            if in_partial {
                return Err(problem(
                    "a partial used inside an inline partial is not accepted from the API".into(),
                ));
            }
            if d.name.as_name().is_none() {
                return Err(problem(
                    "a partial named by an expression is not accepted from the API".into(),
                ));
            }
            match &d.template {
                Some(t) => untrusted(t, each_depth, in_partial),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}
