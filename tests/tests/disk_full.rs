//! A full disk: with the spool on a small tmpfs the test mounts, spooling a
//! campaign larger than the disk fails with a clear error naming how many
//! recipients were accepted; every accepted one is then delivered (outcomes
//! still journal into the journal's reserved space, and finished segments
//! free the disk), and nothing else is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        // SAFETY: geteuid(2) has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "this test mounts a tmpfs and must run as root (CI does)"
        );
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("running mount");
        assert!(ok.success(), "mount -t tmpfs failed");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_refuses_new_recipients_and_delivers_the_accepted_ones() {
    let server = ScriptedServer::accept_all(true);
    let fx = Fixture::new();
    let _disk = Tmpfs::mount(&fx.path().join("spool"), "24m");
    // 120,000 recipients of ~330 bytes each: ~40 MB, more than the disk
    // holds (ingest batches are 16,384 recipients, ~5.4 MB)
    let mut csv = String::from("email,blob\n");
    let blob = "b".repeat(300);
    for i in 0..120_000 {
        csv.push_str(&format!("r{i}@full{}.test,{blob}\n", i % 4));
    }
    fx.write("list.csv", csv);
    fx.campaign("list.csv", "Hi", "Hello\n", "");
    fx.config(
        &server.addr.to_string(),
        "[delivery]\nmessages_per_second = 100000\n",
    );

    let out = fx.volley("enqueue", Duration::from_secs(120));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    let accepted: u64 = err
        .split(" recipients of campaign")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no accepted count in: {err}"));
    assert!((16_384..120_000).contains(&accepted), "{accepted} accepted");

    let s = fx.status();
    assert_eq!(
        s["campaigns"][0]["total"], accepted,
        "exactly the accepted recipients are spooled"
    );
    assert_eq!(s["campaigns"][0]["complete"], false);

    // the service delivers what was accepted, although the disk is full
    let service = spawn(fx.path(), &["run", "--config", "config.toml"]);
    let t0 = std::time::Instant::now();
    while fx.status()["campaigns"][0]["delivered"] != accepted {
        if t0.elapsed() > Duration::from_secs(120) {
            let s = fx.status();
            terminate(&service);
            let out = wait_output(service, Duration::from_secs(60));
            panic!(
                "the accepted recipients were not delivered within 120 s: {s}\n{}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    stop(service);

    let mut copies: HashMap<String, usize> = HashMap::new();
    for m in server.received() {
        for r in m.rcpts {
            *copies.entry(r).or_default() += 1;
        }
    }
    assert_eq!(
        copies.len() as u64,
        accepted,
        "every accepted recipient, and no other, was delivered"
    );
    assert!(copies.values().all(|&n| n == 1));
    assert_eq!(
        per_recipient(&fx.events(), "Delivery").len() as u64,
        accepted
    );
    // finished segments were deleted: the disk has room again
    let segments = std::fs::read_dir(fx.path().join("spool/segments"))
        .unwrap()
        .count();
    assert_eq!(segments, 0, "finished segments freed the disk");
}
