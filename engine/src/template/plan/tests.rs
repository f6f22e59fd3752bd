//! Differential tests of render plans: for each template shape a plan
//! covers (text, variables, comments, `#if`, `#unless`), the plan's output
//! equals Handlebars' for the same data, missing and falsy values included;
//! shapes it does not cover fall back to Handlebars.

use serde_json::{Value, json};

use super::plan;
use crate::template::check::is_helper;

/// A registry set up as the engine's (strict, no escaping).
fn registry(src: &str) -> handlebars::Handlebars<'static> {
    let mut hb = handlebars::Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_template_string("t", src).expect("compiles");
    hb
}

/// Renders `src` with `vars` by its plan; `None` when it has none or the
/// plan gives up. Whatever the plan renders must be exactly Handlebars'
/// output.
fn both(src: &str, vars: &Value) -> Option<String> {
    let hb = registry(src);
    let p = plan(hb.get_template("t").expect("registered"), &is_helper)?;
    let fast = p.render(vars.as_object().expect("an object"))?;
    let slow = hb.render("t", vars);
    assert_eq!(
        slow.as_ref().ok(),
        Some(&fast),
        "template {src:?} with {vars}: Handlebars gave {slow:?}"
    );
    Some(fast)
}

fn has_plan(src: &str) -> bool {
    let hb = registry(src);
    plan(hb.get_template("t").expect("registered"), &is_helper).is_some()
}

const SHAPES: &[&str] = &[
    "Hi {{name}}!",
    "{{{name}}} and {{name}}",
    "{{! a comment }}a{{!-- another --}}b",
    "\\{{name}} {{name}}",
    "{{first-name}} {{first_name}}",
    "{{#if a}}x{{/if}}",
    "{{#if a}}x{{else}}y{{/if}}",
    "{{#unless a}}x{{else}}y{{/unless}}",
    "{{#if a}}x{{else if b}}y{{else}}z{{/if}}",
    "{{#if a}}{{#unless b}}{{name}}{{/unless}}{{/if}}",
    "a  {{~name~}}  b",
    "line1\n{{#if a}}\nyes {{name}}\n{{else}}\nno\n{{/if}}\nend\n",
    "  {{#if a}}  \n  x\n  {{/if}}  \n  tail",
    "x\r\n{{#if a}}\r\ny\r\n{{/if}}\r\nz",
    "ünïcode {{name}} 😀",
    "",
];

fn contexts() -> Vec<Value> {
    vec![
        json!({"name": "Ada", "first-name": "A", "first_name": "B", "a": "1", "b": ""}),
        json!({"name": "", "first-name": "", "first_name": "", "a": "", "b": "x"}),
        json!({"name": "<&>\"'", "first-name": 1, "first_name": 2.5, "a": 0, "b": 1}),
        json!({"name": 42, "first-name": true, "first_name": false, "a": 1.5, "b": true}),
        json!({"name": null, "first-name": -0.0, "first_name": 1e300, "a": null, "b": false}),
        json!({"name": "x", "first-name": "y", "first_name": "z", "a": [], "b": {}}),
        json!({"name": "x", "first-name": "y", "first_name": "z", "a": [0], "b": {"k": 1}}),
        json!({"name": "x", "first-name": "y", "first_name": "z"}),
    ]
}

#[test]
fn plans_render_as_handlebars_does() {
    for src in SHAPES {
        assert!(has_plan(src), "{src:?} should have a plan");
        for vars in contexts() {
            both(src, &vars);
        }
    }
}

#[test]
fn the_example_newsletter_has_a_plan_and_renders_the_same() {
    let vars = json!({"first_name": "Ada", "month": "June", "plan": "team", "city": "Lisbon", "email": "ada@x.test"});
    let no_city =
        json!({"first_name": "Ada", "month": "June", "plan": "team", "email": "ada@x.test"});
    for src in [
        include_str!("../../../../examples/templates/newsletter.html"),
        include_str!("../../../../examples/templates/newsletter.txt"),
    ] {
        assert!(both(src, &vars).is_some_and(|s| s.contains("events near Lisbon")));
        assert!(both(src, &no_city).is_some_and(|s| !s.contains("events near")));
    }
}

#[test]
fn values_it_does_not_render_go_to_handlebars() {
    // a missing variable (Handlebars names it in its error), an array or
    // an object (Handlebars' own rendering of them)
    for vars in [
        json!({}),
        json!({"name": [1, 2]}),
        json!({"name": {"k": 1}}),
    ] {
        assert_eq!(both("Hi {{name}}", &vars), None, "{vars}");
    }
    // a branch not taken does not need its variables
    assert_eq!(
        both("{{#if a}}{{missing}}{{/if}}ok", &json!({"a": ""})),
        Some("ok".into())
    );
}

#[test]
fn other_shapes_have_no_plan() {
    for src in [
        "{{this}}",
        "{{a.b}}",
        "{{@root.a}}",
        "{{../a}}",
        "{{[a b]}}",
        "{{#each xs}}{{this}}{{/each}}",
        "{{#with a}}{{b}}{{/with}}",
        "{{len xs}}",
        "{{len}}",
        "{{lookup a b}}",
        "{{#if a includeZero=true}}x{{/if}}",
        "{{#if (eq a b)}}x{{/if}}",
        "{{#if a.b}}x{{/if}}",
        "{{#*inline \"p\"}}x{{/inline}}{{> p}}",
        "{{#each xs as |x|}}{{x}}{{/each}}",
    ] {
        assert!(!has_plan(src), "{src:?} should have no plan");
    }
}
