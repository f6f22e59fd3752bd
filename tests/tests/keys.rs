//! DKIM keys: `volley keygen` refuses to overwrite an existing key unless
//! given `--force` (and a replaced key is 0600 whatever the old file's
//! mode); a configured key file readable by group or others is used, with a
//! warning naming the file and its mode.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use volley_tests::scripted::ScriptedServer;
use volley_tests::*;

fn keygen(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "keygen",
        "--algorithm",
        "ed25519",
        "--domain",
        "example.com",
        "--selector",
        "s1",
        "--out",
        "keys",
    ];
    args.extend_from_slice(extra);
    let out = run(dir, &args, Duration::from_secs(60));
    assert_no_panic(&out);
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("key file").permissions().mode() & 0o777
}

#[test]
fn keygen_keeps_an_existing_key_unless_forced() {
    let fx = Fixture::new();
    let key = fx.path().join("keys/s1.example.com.key.pem");
    let txt = fx.path().join("keys/s1.example.com.txt");
    let out = keygen(fx.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (first_key, first_txt) = (std::fs::read(&key).unwrap(), std::fs::read(&txt).unwrap());
    assert_eq!(mode(&key), 0o600);

    let again = keygen(fx.path(), &[]);
    let err = text(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{err}");
    assert!(
        err.contains("keys/s1.example.com.key.pem already exists")
            && err.contains("refusing to overwrite")
            && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&key).unwrap(), first_key, "key untouched");
    assert_eq!(std::fs::read(&txt).unwrap(), first_txt, "TXT untouched");

    // --force replaces both; the new key is 0600 even over a 0644 file
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let forced = keygen(fx.path(), &["--force"]);
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced.stderr));
    assert_ne!(std::fs::read(&key).unwrap(), first_key, "key replaced");
    assert_ne!(std::fs::read(&txt).unwrap(), first_txt, "TXT replaced");
    assert_eq!(mode(&key), 0o600);
}

/// Sends a one-recipient campaign signed with `key` (mode `m`); returns
/// what `volley send` wrote to stderr.
fn send_signed_with_mode(m: u32) -> (String, String) {
    let server = ScriptedServer::accept_all(true);
    let fx = Fixture::new();
    let out = keygen(fx.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let key = fx.path().join("keys/s1.example.com.key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(m)).unwrap();
    fx.write("list.csv", "email\nr@keys.test\n");
    fx.campaign("list.csv", "Hi", "Hello\n", "");
    fx.config(
        &server.addr.to_string(),
        &format!(
            "[[dkim]]\ndomain = \"example.com\"\nselector = \"s1\"\nkey = \"{}\"\nalgorithm = \"ed25519-sha256\"\n",
            key.display()
        ),
    );
    let out = fx.send_ok(Duration::from_secs(60));
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert!(
        String::from_utf8_lossy(&received[0].data).contains("DKIM-Signature:"),
        "the key is used"
    );
    (text(&out.stderr), key.display().to_string())
}

#[test]
fn a_key_readable_by_others_is_used_with_a_warning() {
    let (err, key) = send_signed_with_mode(0o644);
    let warning = format!("DKIM key file {key} is readable by group or others (mode 0644)");
    assert!(err.contains(&warning), "{warning}\nin:\n{err}");
    assert_eq!(err.matches("is readable by group or others").count(), 1);

    let (err, _) = send_signed_with_mode(0o640);
    assert!(err.contains("(mode 0640)"), "{err}");

    let (err, _) = send_signed_with_mode(0o600);
    assert!(!err.contains("readable by group or others"), "{err}");
}
