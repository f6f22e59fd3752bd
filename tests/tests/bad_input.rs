//! Bad input never panics: missing files, malformed CSV rows, invalid
//! addresses, duplicate addresses, broken templates and unknown config keys
//! each give a clear error naming what and where, with the documented exit
//! code (2 for bad input, 4 when rows of the list were rejected), and
//! everything else goes on.

use std::time::Duration;

use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

const T: Duration = Duration::from_secs(60);

fn send(fx: &Fixture) -> std::process::Output {
    let out = run(
        fx.path(),
        &["send", "campaign.toml", "--config", "config.toml"],
        T,
    );
    assert_no_panic(&out);
    out
}

fn fixture(server: &ScriptedServer) -> Fixture {
    let fx = Fixture::new();
    fx.write("list.csv", "email,name\na@x.test,A\nb@y.test,B\n");
    fx.campaign("list.csv", "Hi {{name}}", "Hello {{name}}\n", "");
    fx.config(&server.addr.to_string(), "");
    fx
}

#[test]
fn missing_files_exit_2_naming_the_file() {
    let server = ScriptedServer::accept_all(true);
    let fx = fixture(&server);
    let out = run(
        fx.path(),
        &["send", "nope.toml", "--config", "config.toml"],
        T,
    );
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nope.toml"),
        "{}",
        text(&out.stderr)
    );

    let out = run(
        fx.path(),
        &["send", "campaign.toml", "--config", "missing.toml"],
        T,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("missing.toml"),
        "{}",
        text(&out.stderr)
    );

    std::fs::remove_file(fx.path().join("body.txt")).unwrap();
    let out = send(&fx);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("body.txt"),
        "{}",
        text(&out.stderr)
    );

    let fx = fixture(&server);
    std::fs::remove_file(fx.path().join("list.csv")).unwrap();
    let out = send(&fx);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("list.csv"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn unknown_config_key_names_key_and_line() {
    let server = ScriptedServer::accept_all(true);
    let fx = fixture(&server);
    let cfg = std::fs::read_to_string(fx.path().join("config.toml")).unwrap();
    fx.write("config.toml", format!("{cfg}\n[delivery]\nspeed = 10\n"));
    let out = send(&fx);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("speed") && err.contains("line"), "{err}");
    assert!(server.received().is_empty());
}

#[test]
fn broken_template_and_campaign_keys_exit_2() {
    let server = ScriptedServer::accept_all(true);
    let fx = fixture(&server);
    fx.campaign("list.csv", "Hi {{name", "Hello\n", "");
    let out = send(&fx);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("subject"),
        "{}",
        text(&out.stderr)
    );

    fx.campaign("list.csv", "Hi", "Hello\n", "colour = \"red\"\n");
    let out = send(&fx);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("colour"),
        "{}",
        text(&out.stderr)
    );

    fx.write("nomail.csv", "name,address\nA,a@x.test\n");
    fx.campaign("nomail.csv", "Hi", "Hello\n", "");
    let out = send(&fx);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("email"), "{}", text(&out.stderr));
}

#[test]
fn bad_rows_are_rejected_by_line_and_the_rest_delivered() {
    let server = ScriptedServer::accept_all(true);
    let fx = fixture(&server);
    fx.write(
        "list.csv",
        "email,name\nok1@x.test,One\nnot-an-address,Two\nok2@y.test,Three,extra\nok3@z.test,Four\n\"bad@x.test\r\nRCPT TO:<evil@x.test>\",Five\nok4@x.test,\n",
    );
    fx.campaign("list.csv", "Hi", "Hello {{#if name}}{{name}}{{/if}}\n", "");
    let out = send(&fx);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("line 3: rejected: invalid address \"not-an-address\""),
        "{err}"
    );
    assert!(
        err.contains("line 4: rejected: row has 3 fields; the header has 2"),
        "{err}"
    );
    assert!(err.contains("line 6: rejected: invalid address"), "{err}");
    assert!(
        text(&out.stdout).contains("3 rows rejected"),
        "{}",
        text(&out.stdout)
    );
    let mut got: Vec<String> = server
        .received()
        .into_iter()
        .flat_map(|m| m.rcpts)
        .collect();
    got.sort();
    assert_eq!(got, vec!["ok1@x.test", "ok3@z.test", "ok4@x.test"]);
    assert!(!server.command_log().iter().any(|l| l.contains("evil")));
}

/// Addresses the server accepted messages for, sorted.
fn received(server: &ScriptedServer) -> Vec<String> {
    let mut got: Vec<String> = server
        .received()
        .into_iter()
        .flat_map(|m| m.rcpts)
        .collect();
    got.sort();
    got
}

#[test]
fn an_unterminated_quote_in_the_last_column_costs_its_own_row_only() {
    let server = ScriptedServer::accept_all(true);
    let fx = fixture(&server);
    fx.write(
        "list.csv",
        "email,name,note\nq1@a.test,Q1,n1\nq3@a.test,Q3,\"unterminated\nq4@a.test,Q4,n4\nq5@a.test,Q5,n5\n",
    );
    fx.campaign("list.csv", "Hi {{name}}", "Hello {{name}}: {{note}}\n", "");
    let out = send(&fx);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("list.csv: line 3: rejected: a quoted field is never closed"),
        "{stderr}"
    );
    assert!(
        stdout.contains("3 recipients spooled, 1 row rejected;"),
        "{stdout}"
    );
    assert_eq!(
        received(&server),
        vec!["q1@a.test", "q4@a.test", "q5@a.test"]
    );
    // no row became another's text
    for m in server.received() {
        assert!(!text(&m.data).contains("q4@a.test,Q4"), "{}", text(&m.data));
    }
}

#[test]
fn each_address_is_sent_once() {
    let server = ScriptedServer::accept_all(true);
    let fx = fixture(&server);
    fx.write(
        "list.csv",
        "email,name\ndup@a.test,A\ndup@a.test,B\nother@a.test,C\ndup@a.test,D\nDUP@A.TEST,E\n",
    );
    let out = send(&fx);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(received(&server), vec!["dup@a.test", "other@a.test"]);
    for (line, email) in [(3, "dup@a.test"), (5, "dup@a.test"), (6, "DUP@a.test")] {
        assert!(
            stderr.contains(&format!(
                "list.csv: line {line}: skipped: {email} is a duplicate of an earlier row's address"
            )),
            "{stderr}"
        );
    }
    assert!(
        stdout.contains("2 recipients spooled, 3 duplicates skipped;"),
        "{stdout}"
    );
    // sending the campaign again adds no one
    let out = send(&fx);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(received(&server).len(), 2);
}

#[test]
fn templates_that_can_never_render_exit_2_before_anything_is_spooled() {
    let server = ScriptedServer::accept_all(true);
    for (body, says) in [
        (
            "Hello\n{{> missing}}\n",
            "line 2, column 1: partial `missing` is not defined",
        ),
        (
            "Hello\n{{#each}}x{{/each}}\n",
            "line 2, column 1: `{{#each}}` needs 1 parameter",
        ),
    ] {
        let fx = fixture(&server);
        fx.campaign("list.csv", "Hi", body, "");
        let out = send(&fx);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("template body.txt (`text` of campaign"),
            "{err}"
        );
        assert!(err.contains(says), "{err}");
        assert!(!fx.path().join("spool").exists(), "something was spooled");
    }
    assert!(server.received().is_empty());
}

#[test]
fn spool_in_use_is_a_clear_error() {
    let server = ScriptedServer::accept_all(true);
    let fx = fixture(&server);
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(
        Duration::from_secs(30),
        "the service to lock the spool and serve its control socket",
        || fx.path().join("spool/control.sock").exists(),
    );
    // a holder that does not answer on the control socket (with it, the
    // job is handed over: tests/handover.rs)
    std::fs::remove_file(fx.path().join("spool/control.sock")).unwrap();
    let out = send(&fx);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("in use"),
        "{}",
        text(&out.stderr)
    );
    // status reads the spool while it is in use
    let out = run(fx.path(), &["status", "--config", "config.toml"], T);
    assert!(out.status.success(), "{}", text(&out.stderr));
    terminate(&service);
    let out = wait_output(service, T);
    assert_eq!(out.status.code(), Some(0));
}
