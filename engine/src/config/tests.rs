//! Config tests: defaults, parsing, validation errors by key, policy
//! matching.

use super::*;

fn parse(s: &str) -> Result<Config, ConfigError> {
    Config::parse(s, Path::new("test.toml"), Path::new("/base"))
}

#[test]
fn defaults_and_relative_paths() {
    let c = parse("[spool]\ndir = \"sp\"\n").unwrap();
    assert_eq!(c.spool.dir, PathBuf::from("/base/sp"));
    assert_eq!(c.events.jsonl, PathBuf::from("/base/var/events.jsonl"));
    assert_eq!(c.delivery.max_age, Duration::from_secs(72 * 3600));
}

#[test]
fn unknown_key_names_key_and_line() {
    let e = parse("[delivery]\nhelo = \"x\"\nspeed = 3\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("speed"), "{e}");
    assert!(e.contains("line 3"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let e = parse("[delivery]\nconnections = 0\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("delivery.connections"), "{e}");
    let e = parse("[routes]\n\"*\" = \"nohost\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("routes.*"), "{e}");
    let e = parse("[delivery]\nmax_age = \"soon\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad duration"), "{e}");
    let e = parse("[[dkim]]\ndomain=\"a\"\nselector=\"s\"\nkey=\"k\"\nalgorithm=\"rsa\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("rsa-sha256"), "{e}");
    for (text, key) in [
        (
            "[delivery.timeouts]\nrcpt = \"300000000000y\"\n",
            "delivery.timeouts.rcpt",
        ),
        (
            "[delivery.timeouts]\nidle = \"0s\"\n",
            "delivery.timeouts.idle",
        ),
        (
            "[delivery]\nretry_cap = \"500000000000y\"\n",
            "delivery.retry_cap",
        ),
        ("[delivery]\nmax_age = \"400d\"\n", "delivery.max_age"),
        (
            "[[domain]]\nname = \"a.test\"\nretry_first = \"2y\"\n",
            "domain[0].retry_first",
        ),
        ("[routes]\n\"a b\" = \"127.0.0.1:25\"\n", "routes.a b"),
        (
            "[[dkim]]\ndomain=\"a.test\"\nselector=\"s1\\r\\nBcc: x\"\nkey=\"k\"\nalgorithm=\"rsa-sha256\"\n",
            "dkim[0]",
        ),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(key), "{text:?}: {e}");
    }
}

#[test]
fn routes_and_limits() {
    let c = parse(
        "[routes]\n\"*\" = \"127.0.0.1:2525\"\n\"b.test\" = \"[::1]:25\"\n[[domain]]\nname = \"a.test\"\nconnections = 2\n",
    )
    .unwrap();
    assert_eq!(c.route_for("x.test").unwrap().port, 2525);
    assert_eq!(c.route_for("b.test").unwrap().host, "::1");
    assert_eq!(c.policy("A.test", &[]).connections, 2);
    assert_eq!(c.policy("c.test", &[]).connections, 4);
    // route keys match whatever their case or trailing dot
    let c = parse("[routes]\n\"B.Test.\" = \"[::1]:25\"\n").unwrap();
    assert_eq!(c.route_for("b.test").unwrap().host, "::1");
}

#[test]
fn policy_by_domain_then_mx_suffix_then_defaults() {
    let c = parse(concat!(
        "[delivery]\nmessages_per_second = 50\ntls = \"required\"\n",
        "[[domain]]\nname = \"gmail.com\"\nmessages_per_second = 5\n",
        "[[mx]]\nsuffix = \".google.com\"\nconnections = 9\nretry_first = \"2m\"\nmax_age = \"1d\"\n",
        "[[mx]]\nsuffix = \"google.com\"\nconnections = 1\n",
    ))
    .unwrap();
    let mx = vec!["aspmx.l.google.com".to_string()];
    // a domain rule wins over an MX rule, and keeps unset values default
    let p = c.policy("gmail.com", &mx);
    assert_eq!((p.messages_per_second, p.connections), (5.0, 4));
    assert_eq!(p.tls, TlsPolicy::Required);
    // the first matching MX rule applies
    let p = c.policy("example.org", &mx);
    assert_eq!(p.connections, 9);
    assert_eq!(p.retry_first, Duration::from_secs(120));
    assert_eq!(p.max_age, Duration::from_secs(24 * 3600));
    assert_eq!(p.messages_per_second, 50.0);
    // a suffix matches at a label boundary or the whole name only when
    // written with the dot
    assert_eq!(
        c.policy("x.test", &["mx.notgoogle.com".into()]).connections,
        1
    );
    assert_eq!(
        c.policy("x.test", &["mx.other.net".into()]),
        c.default_policy()
    );
}

#[test]
fn shipped_config_documents_the_defaults() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config.toml"));
    let shipped = Config::load(path).expect("the shipped config.toml parses");
    let defaults = parse("").unwrap();
    assert_eq!(shipped.default_policy(), defaults.default_policy());
    let (a, b) = (&shipped.delivery, &defaults.delivery);
    assert_eq!(a.throttle_patterns, b.throttle_patterns);
    assert_eq!(a.smtp_port, b.smtp_port);
    assert_eq!(format!("{:?}", a.timeouts), format!("{:?}", b.timeouts));
    assert_eq!(shipped.http.listen, defaults.http.listen);
    assert!(shipped.dns.nameservers.is_empty());
}

#[test]
fn policy_rules_are_checked() {
    let e = parse("[[mx]]\nname = \"a\"\n").unwrap_err().to_string();
    assert!(e.contains("mx[0]"), "{e}");
    let e = parse("[[domain]]\nname = \"a\"\nretry_jitter = 2\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("domain[0].retry_jitter"), "{e}");
    let e = parse("[[domain]]\nname = \"a\"\ntls = \"sometimes\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("tls"), "{e}");
    let e = parse("[dns]\nnameservers = [\"localhost\"]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("dns.nameservers[0]"), "{e}");
    let e = parse("[delivery.timeouts]\nrcpt = \"forever\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad duration"), "{e}");
}
