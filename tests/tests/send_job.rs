//! `volley send` as a job: stopped by SIGTERM it finishes what is open,
//! reports and tells how to resume, and the resumed job sends each
//! recipient once; its summary and exit code are about its own campaign,
//! whatever else the spool holds.

use std::sync::Arc;
use std::time::Duration;

use volley_tests::scripted::{Options, ScriptedServer, Stage};
use volley_tests::*;

const T: Duration = Duration::from_secs(120);

/// Addresses `r0@x.test` ... as a CSV list.
fn list(n: usize) -> (String, Vec<String>) {
    let rcpts: Vec<String> = (0..n).map(|i| format!("r{i}@x.test")).collect();
    let mut csv = String::from("email,name\n");
    for (i, r) in rcpts.iter().enumerate() {
        csv += &format!("{r},N{i}\n");
    }
    (csv, rcpts)
}

#[test]
fn sigterm_stops_send_cleanly_and_the_resumed_send_sends_each_recipient_once() {
    // every message waits 300 ms for its end-of-data reply: SIGTERM comes
    // while transactions are open
    let server = ScriptedServer::start_with(
        Options {
            pipelining: true,
            tarpit: Some((Stage::DataEnd, Duration::from_millis(300))),
            ..Options::default()
        },
        Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()),
    );
    let fx = Fixture::new();
    let (csv, rcpts) = list(12);
    fx.write("list.csv", csv);
    fx.campaign("list.csv", "Hi {{name}}", "Hello {{name}}\n", "");
    fx.config(
        &server.addr.to_string(),
        "[delivery]\nconnections = 1\nmessages_per_second = 1000\n",
    );
    let job = spawn(
        fx.path(),
        &["send", "campaign.toml", "--config", "config.toml"],
    );
    wait_until(T, "three messages at the server", || {
        server.received_count() >= 3
    });
    terminate(&job);
    let out = wait_output(job, T);
    assert_no_panic(&out);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(128 + 15), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("campaign test-campaign (stopped by SIGTERM): 12 recipients spooled;"),
        "{stdout}"
    );
    assert!(
        stderr.contains("stopped by SIGTERM: ")
            && stderr.contains("`volley send campaign.toml` again resumes"),
        "{stderr}"
    );
    let first = server.received_count();
    assert!(first < 12, "the job was not stopped early: {first} sent");
    // every message the server took was journaled and published
    assert_eq!(
        per_recipient(&fx.events(), "Delivery")
            .values()
            .sum::<usize>(),
        first
    );

    let out = fx.send_ok(T);
    assert!(
        text(&out.stdout).contains("delivered 12, bounced 0, render-failed 0, deferred 0"),
        "{}",
        text(&out.stdout)
    );
    let mut got: Vec<String> = server
        .received()
        .into_iter()
        .flat_map(|m| m.rcpts)
        .collect();
    got.sort();
    let mut want = rcpts.clone();
    want.sort();
    assert_eq!(got, want, "each recipient exactly once at the server");
    let delivered = per_recipient(&fx.events(), "Delivery");
    assert_eq!(delivered.len(), 12);
    assert!(delivered.values().all(|&n| n == 1), "{delivered:?}");
}

#[test]
fn summary_and_exit_code_are_about_the_jobs_own_campaign() {
    // the other campaign's `later` recipients are deferred
    let server = ScriptedServer::start(
        true,
        Arc::new(|rcpt: &str, _: u32| {
            if rcpt.starts_with("later") {
                "451 4.2.0 try again later".to_string()
            } else {
                "250 2.1.5 Ok".to_string()
            }
        }),
    );
    let fx = Fixture::new();
    fx.config(&server.addr.to_string(), "");
    fx.write(
        "other.csv",
        "email\nlater1@y.test\nlater2@y.test\no1@y.test\no2@y.test\no3@y.test\n",
    );
    fx.write("other.txt", "Hello\n");
    fx.write(
        "other.toml",
        "id = \"other\"\nfrom = \"news@example.com\"\nsubject = \"Hi\"\ntext = \"other.txt\"\nrecipients = \"other.csv\"\n",
    );
    let (csv, _) = list(4);
    fx.write("list.csv", csv);
    fx.campaign("list.csv", "Hi {{name}}", "Hello {{name}}\n", "");
    let out = run(
        fx.path(),
        &["enqueue", "other.toml", "--config", "config.toml"],
        T,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = fx.volley("send", T);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "other campaigns' deferrals decide the exit code: {stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(
            "campaign test-campaign: 4 recipients spooled; delivered 4, bounced 0, render-failed 0, deferred 0 in"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "other campaigns in the spool: delivered 3, bounced 0, render-failed 0 during this job; deferred 2, queued 0 left"
        ),
        "{stdout}"
    );
}
