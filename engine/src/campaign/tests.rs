//! Tests of campaign loading: errors that name the file, key and line.
use std::path::Path;

use super::*;

#[test]
fn template_errors_name_the_file_as_written_and_count_lines_from_1() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("templates")).unwrap();
    std::fs::write(
        d.path().join("templates/news.html"),
        "<p>\n{{#each}}x{{/each}}\n",
    )
    .unwrap();
    std::fs::write(d.path().join("list.csv"), "email\n").unwrap();
    let campaign = d.path().join("c.toml");
    let write = |subject: &str| {
        std::fs::write(
            &campaign,
            format!(
                "id = \"c\"\nfrom = \"a@b.test\"\nsubject = {subject:?}\nhtml = \"templates/news.html\"\nrecipients = \"list.csv\"\n"
            ),
        )
        .unwrap()
    };
    write("Hi");
    let e = load(&campaign).unwrap_err().to_string();
    assert!(
        e.starts_with("template templates/news.html (`html` of campaign ")
            && e.contains(": line 2, column 1: `{{#each}}` needs 1 parameter"),
        "{e}"
    );
    write("Hi {{> sig}}");
    let e = load(&campaign).unwrap_err().to_string();
    assert!(
        e.contains("`subject`: line 1, column 4: partial `sig` is not defined"),
        "{e}"
    );
}

#[test]
fn the_configuration_set_is_the_campaigns_else_the_default_and_must_exist() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("t.txt"), "hi\n").unwrap();
    std::fs::write(d.path().join("list.csv"), "email\n").unwrap();
    let campaign = d.path().join("c.toml");
    let write = |extra: &str| {
        let text = format!(
            "id = \"c\"\nfrom = \"a@b.test\"\nsubject = \"s\"\ntext = \"t.txt\"\nrecipients = \"list.csv\"\n{extra}"
        );
        std::fs::write(&campaign, text).unwrap()
    };
    let config = |text: &str| {
        crate::config::Config::parse(text, Path::new("v.toml"), Path::new(".")).unwrap()
    };
    let sets = config(
        "[events]\ndefault_configuration_set = \"main\"\n[configuration_sets.main]\n[configuration_sets.promo]\n",
    );
    let set = |c: &crate::config::Config| {
        load(&campaign)
            .and_then(|l| l.with_configuration_set(c))
            .map(|l| l.def.configuration_set)
    };
    write("");
    assert_eq!(set(&sets).unwrap().as_deref(), Some("main"));
    assert_eq!(set(&config("")).unwrap(), None);
    write("configuration_set = \"promo\"\n");
    assert_eq!(set(&sets).unwrap().as_deref(), Some("promo"));
    write("configuration_set = \"gone\"\n");
    let e = set(&sets).unwrap_err().to_string();
    assert!(
        e.contains("`configuration_set`") && e.contains("\"gone\"") && e.contains("main, promo"),
        "{e}"
    );
    // stored without the key when there is none (definitions spooled
    // before sets existed read back the same)
    let mut def = load(&campaign).unwrap().def;
    def.configuration_set = None;
    assert!(
        !String::from_utf8(def.to_bytes())
            .unwrap()
            .contains("configuration_set")
    );
}

#[test]
fn the_example_campaign_loads() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/campaign.toml");
    load(&p).unwrap();
}
