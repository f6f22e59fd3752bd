//! A render plan: the common shape of campaign templates (text, `{{var}}`,
//! `{{{var}}}`, comments, `{{#if var}}`/`{{#unless var}}` with `else` and
//! `else if`) compiled once into segments that render by plain lookups and
//! copies, without Handlebars' per-expression machinery (helper lookup,
//! path evaluation, scoped values), which cost more than the rest of a
//! message's production outside signing.
//!
//! A template with anything else (dotted paths, `this`, `@root`, helpers,
//! `each`/`with`, partials, `includeZero`) gets no plan, and a plan gives up
//! on a value it does not render itself (a missing variable, an array or
//! object): Handlebars then renders that part, so output and error
//! messages are Handlebars' own. The tests compare the two on every shape
//! the plan takes. Pure.

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{JsonTruthy, Path, PathSeg};
use serde_json::{Map, Value};

/// One piece of a plan. Variables are named by their place in the plan's
/// list of names, so each is looked up once per render however often the
/// template uses it.
#[derive(Debug)]
enum Seg {
    Text(String),
    Var(usize),
    /// `{{#if name}}` (`positive`) or `{{#unless name}}`.
    If {
        name: usize,
        positive: bool,
        then: Vec<Seg>,
        otherwise: Vec<Seg>,
    },
}

/// A compiled template that renders without Handlebars.
#[derive(Debug)]
pub(super) struct Plan {
    segs: Vec<Seg>,
    /// The variable names the segments use.
    names: Vec<String>,
    /// The length of its text, a first guess at the output's size.
    text_len: usize,
}

/// The plan of `t`, or `None` when it has something a plan does not
/// render. `is_helper` says which names Handlebars would call as helpers
/// (`{{name}}` is then a helper call, not a variable).
pub(super) fn plan(t: &Template, is_helper: &dyn Fn(&str) -> bool) -> Option<Plan> {
    let mut names = Names {
        names: Vec::new(),
        is_helper,
    };
    let segs = names.segs(t)?;
    let text_len = text_len(&segs);
    Some(Plan {
        segs,
        names: names.names,
        text_len,
    })
}

/// Compiling a plan: the variable names met so far.
struct Names<'a> {
    names: Vec<String>,
    is_helper: &'a dyn Fn(&str) -> bool,
}

fn text_len(segs: &[Seg]) -> usize {
    segs.iter()
        .map(|s| match s {
            Seg::Text(t) => t.len(),
            Seg::Var(_) => 0,
            Seg::If {
                then, otherwise, ..
            } => text_len(then).max(text_len(otherwise)),
        })
        .sum()
}

/// A variable named by a single plain identifier (no dots, `this`, `@`,
/// `../` or brackets).
fn variable<'a>(p: &'a Parameter, is_helper: &dyn Fn(&str) -> bool) -> Option<&'a str> {
    let Parameter::Path(Path::Relative((segs, raw))) = p else {
        return None;
    };
    let single = matches!(segs.as_slice(), [PathSeg::Named(n)] if n == raw);
    let plain = single
        && raw != "this"
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (plain && !is_helper(raw)).then_some(raw)
}

impl Names<'_> {
    /// The place of variable `p` in the list (added when new).
    fn slot(&mut self, p: &Parameter) -> Option<usize> {
        let name = variable(p, self.is_helper)?;
        Some(match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.to_string());
                self.names.len() - 1
            }
        })
    }

    fn segs(&mut self, t: &Template) -> Option<Vec<Seg>> {
        let mut out: Vec<Seg> = Vec::with_capacity(t.elements.len());
        for e in &t.elements {
            let seg = match e {
                TemplateElement::RawString(s) => Seg::Text(s.clone()),
                TemplateElement::Comment(_) => continue,
                TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                    if h.block || !h.params.is_empty() || !h.hash.is_empty() {
                        return None;
                    }
                    Seg::Var(self.slot(&h.name)?)
                }
                TemplateElement::HelperBlock(h) => self.condition(h)?,
                _ => return None,
            };
            match (out.last_mut(), seg) {
                (Some(Seg::Text(prev)), Seg::Text(s)) => prev.push_str(&s),
                (_, seg) => out.push(seg),
            }
        }
        Some(out)
    }

    /// `{{#if name}}` / `{{#unless name}}` with its branches.
    fn condition(&mut self, h: &HelperTemplate) -> Option<Seg> {
        let positive = match h.name.as_name()? {
            "if" => true,
            "unless" => false,
            _ => return None,
        };
        if h.params.len() != 1 || !h.hash.is_empty() || h.block_param.is_some() {
            return None;
        }
        let name = self.slot(&h.params[0])?;
        let mut branch = |t: &Option<Template>| match t {
            Some(t) => self.segs(t),
            None => Some(Vec::new()),
        };
        Some(Seg::If {
            name,
            positive,
            then: branch(&h.template)?,
            otherwise: branch(&h.inverse)?,
        })
    }
}

/// Handlebars' truthiness (without `includeZero`); a missing value is
/// false, as in Handlebars (strict mode does not apply to `if`).
fn truthy(v: Option<&Value>) -> bool {
    v.is_some_and(|v| v.is_truthy(false))
}

impl Plan {
    /// Renders with `vars` into a new string; `None` when a value needs
    /// Handlebars (missing, an array or an object).
    pub(super) fn render(&self, vars: &Map<String, Value>) -> Option<String> {
        let values: Vec<Option<&Value>> = self.names.iter().map(|n| vars.get(n)).collect();
        let mut out = String::with_capacity(self.text_len + self.text_len / 8 + 64);
        render(&self.segs, &values, &mut out).then_some(out)
    }
}

fn render(segs: &[Seg], vars: &[Option<&Value>], out: &mut String) -> bool {
    for s in segs {
        match s {
            Seg::Text(t) => out.push_str(t),
            Seg::Var(name) => match vars.get(*name).copied().flatten() {
                Some(Value::String(v)) => out.push_str(v),
                Some(Value::Number(n)) => out.push_str(&n.to_string()),
                Some(Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
                Some(Value::Null) => {}
                None | Some(Value::Array(_) | Value::Object(_)) => return false,
            },
            Seg::If {
                name,
                positive,
                then,
                otherwise,
            } => {
                let branch = if truthy(vars.get(*name).copied().flatten()) == *positive {
                    then
                } else {
                    otherwise
                };
                if !render(branch, vars, out) {
                    return false;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests;
