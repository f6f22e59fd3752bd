//! Campaign jobs while `volley run` holds the spool: `volley send` and
//! `volley enqueue` hand their campaign to the service over its control
//! socket and get the same acceptance, summary and exit codes as alone;
//! two jobs at once work; a job stopped by SIGINT exits 130 with its
//! summary while the service goes on delivering.

use std::sync::Arc;
use std::time::Duration;

use volley_tests::process::{Running, run, spawn, stop, wait_output};
use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

fn start(fx: &Fixture) -> Running {
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the control socket", || {
        fx.path().join("spool").join("control.sock").exists()
    });
    service
}

fn list(fx: &Fixture, name: &str, n: usize, prefix: &str) {
    let mut csv = String::from("email,name\n");
    for i in 0..n {
        csv.push_str(&format!("{prefix}{i}@d{}.test,N{i}\n", i % 7));
    }
    fx.write(name, csv);
}

fn campaign(fx: &Fixture, file: &str, id: &str, list: &str) {
    fx.write(
        file,
        format!("id = \"{id}\"\nfrom = \"News <news@example.com>\"\nsubject = \"Hi {{{{name}}}}\"\ntext = \"body.txt\"\nrecipients = \"{list}\"\n"),
    );
}

fn delivered(server: &ScriptedServer) -> usize {
    server.received().iter().map(|m| m.rcpts.len()).sum()
}

#[test]
fn jobs_hand_their_campaigns_to_the_running_service() {
    let server =
        ScriptedServer::start(true, Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()));
    let fx = Fixture::new();
    fx.config(
        &server.addr.to_string(),
        "[delivery]\nmessages_per_second = 2000\nconnections = 8\n",
    );
    fx.write("body.txt", "Hello {{name}}\n");
    list(&fx, "a.csv", 300, "a");
    list(&fx, "b.csv", 300, "b");
    let mut bad = String::from("email,name\n");
    for i in 0..50 {
        bad.push_str(&format!("c{i}@d.test,N\n"));
    }
    bad.push_str("not-an-address,N\n");
    fx.write("c.csv", bad);
    campaign(&fx, "a.toml", "camp-a", "a.csv");
    campaign(&fx, "b.toml", "camp-b", "b.csv");
    campaign(&fx, "c.toml", "camp-c", "c.csv");
    let service = start(&fx);

    // two send jobs at once
    let jobs: Vec<_> = ["a.toml", "b.toml"]
        .iter()
        .map(|c| {
            let dir = fx.path().to_path_buf();
            let c = c.to_string();
            std::thread::spawn(move || {
                run(
                    &dir,
                    &["send", &c, "--config", "config.toml"],
                    Duration::from_secs(120),
                )
            })
        })
        .collect();
    for (j, id) in jobs.into_iter().zip(["camp-a", "camp-b"]) {
        let out = j.join().unwrap();
        assert_no_panic(&out);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let summary = text(&out.stdout);
        assert!(
            summary.contains(&format!(
                "campaign {id}: 300 recipients spooled; delivered 300"
            )),
            "{summary}"
        );
        assert!(
            text(&out.stderr).contains("running `volley run`"),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(delivered(&server), 600);
    // enqueue: a rejected row gives 4, the rest is delivered by the service
    let out = run(
        fx.path(),
        &["enqueue", "c.toml", "--config", "config.toml"],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("campaign camp-c: 50 recipients spooled, 1 row rejected"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("line 52: rejected"),
        "{}",
        text(&out.stderr)
    );
    wait_until(Duration::from_secs(60), "camp-c delivered", || {
        delivered(&server) == 650
    });
    // the same campaign again adds nobody
    let out = run(
        fx.path(),
        &["send", "a.toml", "--config", "config.toml"],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("already spooled"),
        "{}",
        text(&out.stderr)
    );
    // a broken campaign is refused with 2 before anything is spooled
    fx.write("bad.toml", "id = \"x\"\nfrom = \"nobody\"\n");
    let out = run(
        fx.path(),
        &["send", "bad.toml", "--config", "config.toml"],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2));
    stop(service);
    assert_eq!(delivered(&server), 650);
    let status = fx.status();
    assert_eq!(status["totals"]["delivered"], 650, "{status}");
}

#[test]
fn a_stopped_job_exits_130_and_the_service_goes_on() {
    let server =
        ScriptedServer::start(true, Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()));
    let fx = Fixture::new();
    // slow delivery: the job is still waiting when it is stopped
    fx.config(
        &server.addr.to_string(),
        "[delivery]\nmessages_per_second = 20\nconnections = 1\n",
    );
    fx.write("body.txt", "Hello {{name}}\n");
    list(&fx, "a.csv", 200, "a");
    campaign(&fx, "a.toml", "slow", "a.csv");
    let service = start(&fx);
    let job = spawn(fx.path(), &["send", "a.toml", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "delivery under way", || {
        delivered(&server) >= 5
    });
    // SAFETY: kill(2) with the pid of our child.
    unsafe {
        libc::kill(job.id() as libc::pid_t, libc::SIGINT);
    }
    let out = wait_output(job, Duration::from_secs(60));
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("campaign slow (stopped by SIGINT)"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        delivered(&server) < 200,
        "the job was stopped before the end"
    );
    // the service delivers the rest
    wait_until(Duration::from_secs(120), "all delivered", || {
        delivered(&server) >= 200
    });
    stop(service);
    assert_eq!(delivered(&server), 200);
}

#[test]
fn two_jobs_without_a_service_both_work() {
    let server =
        ScriptedServer::start(true, Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()));
    let fx = Fixture::new();
    // slow enough that the first job still runs when the second starts
    fx.config(
        &server.addr.to_string(),
        "[delivery]\nmessages_per_second = 100\nconnections = 2\n",
    );
    fx.write("body.txt", "Hello {{name}}\n");
    list(&fx, "a.csv", 300, "a");
    list(&fx, "b.csv", 100, "b");
    campaign(&fx, "a.toml", "first", "a.csv");
    campaign(&fx, "b.toml", "second", "b.csv");
    let first = spawn(fx.path(), &["send", "a.toml", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the first job serving", || {
        fx.path().join("spool").join("control.sock").exists() && delivered(&server) > 0
    });
    let out = run(
        fx.path(),
        &["send", "b.toml", "--config", "config.toml"],
        Duration::from_secs(120),
    );
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("campaign second: 100 recipients spooled; delivered 100"),
        "{}",
        text(&out.stdout)
    );
    let out = wait_output(first, Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("campaign first: 300 recipients spooled; delivered 300"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(delivered(&server), 400);
}
