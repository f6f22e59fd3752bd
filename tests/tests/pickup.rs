//! The drop directory (`pickup/`) and `volley sendmail`: messages written
//! by sendmail (with `-f`, `-t`, recipients as arguments; its exit codes)
//! and files renamed into `pickup/new/` by hand are delivered; a campaign
//! bundle is spooled and delivered; hostile entries (binary garbage, no
//! recipients, too large, a header bomb, a symlink, a FIFO, odd names, a
//! bundle reaching outside itself) go to `pickup/rejected/` with a reason
//! and stall nothing; kill -9 while files are ingested loses none and
//! stores none twice.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use volley_tests::process::{Running, spawn};
use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

fn pickup(fx: &Fixture) -> PathBuf {
    fx.path().join("spool").join("pickup")
}

fn start(fx: &Fixture) -> Running {
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the service up", || {
        http_get(&fx.http_addr(), "/healthz").is_ok()
    });
    service
}

/// Drops a message the Maildir way: written in tmp/, renamed into new/.
fn drop_file(fx: &Fixture, name: &str, content: &[u8]) {
    let dir = pickup(fx);
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::create_dir_all(dir.join("new")).unwrap();
    let tmp = dir.join("tmp").join(name);
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join("new").join(name)).unwrap();
}

fn sendmail(dir: &Path, args: &[&str], stdin: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(process::volley())
        .arg("sendmail")
        .args(["--config", "config.toml"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("volley sendmail");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stderr))
}

fn delivered(server: &ScriptedServer) -> usize {
    server.received().iter().map(|m| m.rcpts.len()).sum()
}

#[test]
fn sendmail_files_and_bundles_are_delivered_and_hostile_entries_rejected() {
    let server =
        ScriptedServer::start(true, Arc::new(|_: &str, _: u32| "250 2.1.5 Ok".to_string()));
    let fx = Fixture::new();
    fx.config(
        &server.addr.to_string(),
        "[submission]\nmax_message_size = \"64KB\"\n",
    );
    let service = start(&fx);

    // sendmail: recipients as arguments, -f; a lone "." ends the message
    let (code, err) = sendmail(
        fx.path(),
        &["-f", "cron@example.com", "ops@one.test"],
        "Subject: nightly\n\nall good\n.\nnot part of it\n",
    );
    assert_eq!(code, 0, "{err}");
    // -t: To, Cc and Bcc; -i: dots are text
    let (code, err) = sendmail(
        fx.path(),
        &["-t", "-i"],
        "From: App <app@example.com>\nTo: a@one.test\nCc: b@two.test\nBcc: c@three.test\nSubject: t\n\n.\nbody\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        sendmail(fx.path(), &["-f", "x@example.com"], "Subject: x\n\n").0,
        64,
        "no recipients"
    );
    assert_eq!(
        sendmail(
            fx.path(),
            &["-f", "x@example.com", "not-an-address"],
            "Subject: x\n\n"
        )
        .0,
        65
    );
    assert_eq!(
        sendmail(fx.path(), &["r@one.test"], "Subject: no sender\n\n").0,
        65
    );
    assert_eq!(sendmail(fx.path(), &["-bp"], "").0, 64);
    // installed as sendmail: the binary called by that name
    std::os::unix::fs::symlink(process::volley(), fx.path().join("sendmail")).unwrap();
    let mut child = Command::new(fx.path().join("sendmail"))
        .args(["-oi", "-f", "app@example.com", "named@one.test"])
        .current_dir(fx.path())
        .env("VOLLEY_CONFIG", fx.path().join("config.toml"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"Subject: as sendmail\n\nhi\n")
            .unwrap();
    }
    assert!(child.wait().unwrap().success());

    // files dropped by hand
    for i in 0..50 {
        drop_file(&fx, &format!("{i}.eml"), format!("From: app@example.com\r\nTo: r{i}@four.test\r\nSubject: dropped {i}\r\n\r\nbody {i}\r\n").as_bytes());
    }
    drop_file(&fx, "odd name\n;$(rm -rf).eml", b"X-Envelope-From: <app@example.com>\nX-Envelope-To: <odd@four.test>\nSubject: odd\n\nodd\n");
    // hostile entries
    let mut garbage = Vec::new();
    for i in 0..4096u32 {
        garbage.push((i.wrapping_mul(2654435761) >> 24) as u8);
    }
    drop_file(&fx, "garbage.bin", &garbage);
    drop_file(
        &fx,
        "no-rcpt.eml",
        b"From: app@example.com\nSubject: nobody\n\nx\n",
    );
    drop_file(
        &fx,
        "huge.eml",
        format!(
            "From: app@example.com\nTo: h@four.test\n\n{}",
            "x".repeat(70_000)
        )
        .as_bytes(),
    );
    drop_file(
        &fx,
        "bomb.eml",
        format!(
            "From: app@example.com\nTo: h@four.test\n{}\nx\n",
            "X-A: b\n".repeat(5000)
        )
        .as_bytes(),
    );
    drop_file(
        &fx,
        "bad-set.eml",
        b"From: app@example.com\nTo: h@four.test\nX-SES-CONFIGURATION-SET: nope\n\nx\n",
    );
    let new = pickup(&fx).join("new");
    std::os::unix::fs::symlink("/etc/passwd", new.join("link.eml")).unwrap();
    let fifo = std::ffi::CString::new(new.join("pipe").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    // bundles: one without a campaign, one reaching outside itself, one good
    let tmp = pickup(&fx).join("tmp");
    std::fs::create_dir_all(tmp.join("empty-bundle")).unwrap();
    std::fs::rename(tmp.join("empty-bundle"), new.join("empty-bundle")).unwrap();
    let evil = tmp.join("evil-bundle");
    std::fs::create_dir_all(&evil).unwrap();
    std::fs::write(evil.join("campaign.toml"), "id = \"evil\"\nfrom = \"app@example.com\"\nsubject = \"x\"\ntext = \"/etc/passwd\"\nrecipients = \"list.csv\"\n").unwrap();
    std::fs::write(evil.join("list.csv"), "email\nv@four.test\n").unwrap();
    std::fs::rename(&evil, new.join("evil-bundle")).unwrap();
    let good = tmp.join("good-bundle");
    std::fs::create_dir_all(&good).unwrap();
    std::fs::write(good.join("campaign.toml"), "id = \"bundle-1\"\nfrom = \"News <news@example.com>\"\nsubject = \"Hi {{name}}\"\ntext = \"body.txt\"\nrecipients = \"list.csv\"\n").unwrap();
    std::fs::write(good.join("body.txt"), "Hello {{name}}\n").unwrap();
    std::fs::write(
        good.join("list.csv"),
        "email,name\nb1@five.test,One\nb2@five.test,Two\nb3@five.test,Three\n",
    )
    .unwrap();
    std::fs::rename(&good, new.join("good-bundle")).unwrap();

    let want = 1 + 1 + 3 + 50 + 1 + 3;
    wait_until(
        Duration::from_secs(120),
        "every good entry delivered",
        || delivered(&server) >= want,
    );
    wait_until(Duration::from_secs(60), "new/ emptied", || {
        std::fs::read_dir(&new).map(|d| d.count()).unwrap_or(1) == 0
    });
    process::stop(service);
    assert_eq!(delivered(&server), want);
    let data: Vec<String> = server.received().iter().map(|m| text(&m.data)).collect();
    let nightly = data
        .iter()
        .find(|d| d.contains("Subject: nightly"))
        .expect("the sendmail message");
    assert!(
        nightly.contains("all good") && !nightly.contains("not part of it"),
        "{nightly}"
    );
    let t = data
        .iter()
        .find(|d| d.contains("Subject: t\r\n"))
        .expect("the -t message");
    assert!(!t.contains("Bcc:") && !t.contains("X-Envelope"), "{t}");
    assert!(
        data.iter().any(|d| d.contains("Hello Two")),
        "the bundle's campaign"
    );

    let rejected = pickup(&fx).join("rejected");
    let reason = |name: &str| {
        std::fs::read_to_string(rejected.join(format!("{name}.reason")))
            .unwrap_or_else(|e| panic!("{name}.reason: {e}"))
    };
    assert!(
        reason("garbage.bin").contains("no recipients"),
        "{}",
        reason("garbage.bin")
    );
    assert!(reason("no-rcpt.eml").contains("no recipients"));
    assert!(reason("huge.eml").contains("limit"));
    assert!(reason("bomb.eml").contains("header"));
    assert!(reason("bad-set.eml").contains("nope"));
    assert!(reason("link.eml").contains("not a regular file"));
    assert!(reason("pipe").contains("not a regular file"));
    assert!(reason("empty-bundle").contains("campaign file"));
    assert!(
        reason("evil-bundle").contains("/etc/passwd"),
        "{}",
        reason("evil-bundle")
    );
    assert!(
        rejected
            .join("link.eml")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn kill_9_while_files_are_ingested_loses_none_and_doubles_none() {
    // the destination is down: everything stays spooled and countable
    let fx = Fixture::new();
    fx.config(&format!("127.0.0.1:{}", free_port()), "");
    let mut service = start(&fx);
    let total = 400;
    for i in 0..total {
        drop_file(
            &fx,
            &format!("m{i:04}.eml"),
            format!("From: app@example.com\nTo: r{i}@one.test\nSubject: {i}\n\nbody\n").as_bytes(),
        );
        if i == total / 2 {
            service.kill().expect("kill -9");
            let _ = service.wait();
        }
    }
    let service = start(&fx);
    let new = pickup(&fx).join("new");
    wait_until(Duration::from_secs(120), "new/ emptied", || {
        std::fs::read_dir(&new).map(|d| d.count()).unwrap_or(1) == 0
    });
    process::stop(service);
    let status = fx.status();
    assert_eq!(status["totals"]["total"], total, "{status}");
    let rejected = std::fs::read_dir(pickup(&fx).join("rejected"))
        .unwrap()
        .count();
    assert_eq!(rejected, 0);
}
