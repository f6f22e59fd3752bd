//! The SES v2 HTTP API of `volley run` with real clients: boto3's `sesv2`
//! client (`peers/ses_client.py`) calls every operation, refusals
//! included, and the AWS CLI sends one message; the messages arrive at
//! Postfix's `smtp-sink` signed (dkimpy checks every signature), and the
//! `Delivery` events reach a webhook destination with the `MessageId`
//! the API returned. Templates survive a restart.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use volley_tests::process::{Running, spawn};
use volley_tests::receiver::Receiver;
use volley_tests::*;

const KEY: &str = "AKIAVOLLEYAPI";
const SECRET: &str = "api/Secret+Key0123456789abcdefghijklmno";
const SMALL_KEY: &str = "AKIAVOLLEYSMALL";
const SMALL_SECRET: &str = "small-secret";

struct Rig {
    fx: Fixture,
    port: u16,
    sink: PostfixSink,
    hook: Receiver,
}

fn volley_ok(fx: &Fixture, args: &[&str]) {
    let out = Command::new(process::volley())
        .args(args)
        .current_dir(fx.path())
        .output()
        .expect("volley");
    assert!(
        out.status.success(),
        "volley {args:?}: {}",
        text(&out.stderr)
    );
}

fn rig() -> Rig {
    rig_with("")
}

/// A rig whose `[api]` table has `api_extra` too.
fn rig_with(api_extra: &str) -> Rig {
    let fx = Fixture::new();
    let sink = PostfixSink::start();
    let hook = Receiver::start(free_port(), &fx.path().join("hook.jsonl"));
    let port = free_port();
    volley_ok(
        &fx,
        &[
            "keygen",
            "--algorithm",
            "ed25519",
            "--domain",
            "shop.test",
            "--selector",
            "s1",
            "--out",
            ".",
        ],
    );
    fx.config(
        &sink.addr(),
        &format!(
            "[[dkim]]\ndomain = \"shop.test\"\nselector = \"s1\"\nkey = \"s1.shop.test.key.pem\"\nalgorithm = \"ed25519-sha256\"\n\
             [api]\nlisten = \"127.0.0.1:{port}\"\n{api_extra}\n\
             [configuration_sets.tx]\n[[configuration_sets.tx.destinations]]\nname = \"hook\"\nevent_types = [\"Delivery\"]\nwebhook = {{ url = \"{}\", format = \"raw\" }}\n\
             [[submission.ses_credentials]]\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\nregion = \"eu-west-1\"\nidentities = [\"shop.test\"]\nmax_24_hour_send = 1000\n\
             [[submission.ses_credentials]]\naccess_key_id = \"{SMALL_KEY}\"\nsecret_access_key = \"{SMALL_SECRET}\"\nregion = \"eu-west-1\"\nidentities = [\"shop.test\"]\nmax_24_hour_send = 1\n",
            hook.url()
        ),
    );
    Rig {
        fx,
        port,
        sink,
        hook,
    }
}

fn start(rig: &Rig) -> Running {
    let service = spawn(rig.fx.path(), &["run", "--config", "config.toml"]);
    wait_until(Duration::from_secs(60), "the API listener", || {
        TcpStream::connect(("127.0.0.1", rig.port)).is_ok()
    });
    service
}

/// `python3` with boto3 and the AWS CLI (`scripts/install-test-deps.sh`).
fn python() -> &'static str {
    "python3"
}

fn endpoint(rig: &Rig) -> String {
    format!("http://127.0.0.1:{}", rig.port)
}

#[test]
fn boto3_and_the_aws_cli_send_through_volley() {
    let rig = rig();
    // a recipient's own unsubscribe, which the API must not undo
    volley_ok(
        &rig.fx,
        &[
            "suppression",
            "add",
            "optout@one.test",
            "--reason",
            "UNSUBSCRIBE",
            "--config",
            "config.toml",
        ],
    );
    let mut service = start(&rig);
    let out = Command::new(python())
        .arg(peers_dir().join("ses_client.py"))
        .args([
            &endpoint(&rig),
            KEY,
            SECRET,
            "eu-west-1",
            SMALL_KEY,
            SMALL_SECRET,
        ])
        .output()
        .expect("python3 ses_client.py (boto3)");
    let line = text(&out.stdout);
    let r: serde_json::Value = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("{e}: {line} {}", text(&out.stderr)));

    // refusals, as the SDK sees them
    let code = |k: &str| (r[k]["code"].clone(), r[k]["status"].clone());
    let want = [
        ("create_again", "AlreadyExistsException", 400),
        ("get_deleted", "NotFoundException", 404),
        ("unknown_template", "NotFoundException", 404),
        ("missing_variable", "BadRequestException", 400),
        ("bad_address", "BadRequestException", 400),
        ("unverified", "MessageRejected", 400),
        ("raw_spoofed", "MessageRejected", 400),
        ("unknown_set", "NotFoundException", 404),
        ("no_recipients", "BadRequestException", 400),
        ("too_many", "BadRequestException", 400),
        ("wrong_secret", "SignatureDoesNotMatch", 403),
        ("unknown_key", "InvalidClientTokenId", 403),
        ("get_unsuppressed", "NotFoundException", 404),
        ("bad_reason", "BadRequestException", 400),
        ("unknown_set_get", "NotFoundException", 404),
        ("small_second", "TooManyRequestsException", 429),
        ("v1_unverified", "MessageRejected", 400),
        ("v1_no_template", "TemplateDoesNotExist", 400),
        ("v1_wrong_secret", "SignatureDoesNotMatch", 403),
        ("optout_get", "NotFoundException", 404),
        ("optout_delete", "NotFoundException", 404),
    ];
    for (k, c, s) in want {
        assert_eq!(code(k), (c.into(), s.into()), "{k}: {}", r[k]);
    }
    assert!(
        r["missing_variable"]["message"]
            .as_str()
            .unwrap()
            .contains("Attribute 'plan' is not present"),
        "{}",
        r["missing_variable"]
    );
    assert!(
        r["bad_address"]["message"]
            .as_str()
            .unwrap()
            .contains("Destination.ToAddresses[0]")
    );
    // templates
    assert_eq!(r["get_template"]["Subject"], "Welcome aboard, {{name}}");
    assert_eq!(
        r["template_names"],
        serde_json::json!(["Welcome", "extra-0", "extra-1", "extra-2"])
    );
    let rendered = r["rendered"].as_str().unwrap();
    assert!(
        rendered.contains("Subject: Welcome aboard, Ada"),
        "{rendered}"
    );
    assert!(rendered.contains("Hello Ada, plan pro."), "{rendered}");
    // bulk: two sent, one refused with its reason
    let bulk = r["bulk"].as_array().unwrap();
    assert_eq!(bulk[0]["Status"], "SUCCESS");
    assert_eq!(bulk[1]["Status"], "SUCCESS");
    assert_eq!(bulk[2]["Status"], "INVALID_PARAMETER");
    assert!(
        bulk[2]["Error"]
            .as_str()
            .unwrap()
            .contains("not an address")
    );
    // suppression
    assert_eq!(r["suppressed"], "BOUNCE");
    assert_eq!(
        r["suppressed_bounces"],
        serde_json::json!(["gone@one.test"])
    );
    assert_eq!(
        r["suppressed_all"],
        serde_json::json!(["angry@two.test", "gone@one.test"])
    );
    assert_eq!(r["account"]["enabled"], true);
    assert_eq!(r["account"]["quota"]["Max24HourSend"], 1000.0);
    assert_eq!(r["small_account"]["SentLast24Hours"], 1.0);
    assert_eq!(r["sets"], serde_json::json!(["tx"]));
    // the unsubscribe is still there after the API's PUT and DELETE
    assert!(
        !r["suppressed_all"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "optout@one.test")
    );
    // the classic query API: the same path, XML answers
    let v1bulk = r["v1_bulk"].as_array().unwrap();
    assert_eq!(v1bulk[0]["Status"], "Success");
    assert_eq!(v1bulk[1]["Status"], "InvalidParameterValue");

    // the AWS CLI, as a shell script would call it
    let cli = Command::new("aws")
        .args(["sesv2", "send-email", "--endpoint-url", &endpoint(&rig)])
        .args([
            "--region",
            "eu-west-1",
            "--from-email-address",
            "cli@shop.test",
        ])
        .args(["--destination", "ToAddresses=cli@two.test"])
        .args([
            "--content",
            r#"{"Simple":{"Subject":{"Data":"from the cli"},"Body":{"Text":{"Data":"cli body"}}}}"#,
        ])
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("aws (the AWS CLI, scripts/install-test-deps.sh)");
    assert!(cli.status.success(), "aws: {}", text(&cli.stderr));
    let cli_id: serde_json::Value = serde_json::from_slice(&cli.stdout).expect("aws output");
    let cli_id = cli_id["MessageId"].as_str().unwrap().to_string();

    // at the sink: every accepted recipient but the suppressed one
    let want_rcpts = [
        "ada@one.test",
        "cc@two.test",
        "hidden@two.test",
        "raw@one.test",
        "bob@one.test",
        "carol@one.test",
        "b1@one.test",
        "b2@two.test",
        "q1@one.test",
        "cli@two.test",
        "v1a@one.test",
        "v1raw@two.test",
        "v1t@one.test",
        "v1b1@one.test",
    ];
    wait_until(
        Duration::from_secs(60),
        "every API message at the sink",
        || rig.sink.recipients().len() >= want_rcpts.len(),
    );
    let mut got = rig.sink.recipients();
    got.sort();
    let mut want: Vec<String> = want_rcpts.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
    let key_arg = rig.fx.path().join("s1.shop.test.txt").display().to_string();
    for f in rig.sink.files() {
        let m = std::fs::read_to_string(&f).unwrap_or_default();
        assert!(!m.contains("\nBcc:"), "Bcc shown: {m}");
        let (ok, report) = verify_dkim(&f, std::slice::from_ref(&key_arg));
        assert!(ok, "{}: {report}", f.display());
        if m.contains("Reset your password") {
            assert!(m.contains("X-Flow: reset"), "{m}");
            let id = r["simple"].as_str().unwrap();
            assert!(m.contains(&format!("Message-ID: <{id}@shop.test>")), "{m}");
        }
    }
    // the suppressed recipient's message: a Bounce event, not delivered
    wait_until(
        Duration::from_secs(30),
        "the suppressed bounce event",
        || {
            rig.fx
                .events()
                .iter()
                .any(|e| e["eventType"] == "Bounce" && e["mail"]["messageId"] == r["to_suppressed"])
        },
    );
    // Delivery at the webhook with the ids the API returned (set `tx`)
    let ids: Vec<String> = ["simple", "raw", "v1_send"]
        .iter()
        .map(|k| r[k].as_str().unwrap().to_string())
        .chain(
            bulk[..2]
                .iter()
                .map(|b| b["MessageId"].as_str().unwrap().to_string()),
        )
        .collect();
    wait_until(
        Duration::from_secs(60),
        "Delivery events at the webhook",
        || {
            let seen: Vec<String> = rig
                .hook
                .of_kind("raw")
                .iter()
                .filter(|x| x["event"]["eventType"] == "Delivery")
                .map(|x| {
                    x["event"]["mail"]["messageId"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                })
                .collect();
            ids.iter().all(|i| seen.contains(i))
        },
    );
    let tagged = rig
        .fx
        .events()
        .into_iter()
        .find(|e| e["eventType"] == "Delivery" && e["mail"]["messageId"] == r["simple"]);
    let tagged = tagged.expect("the simple message's delivery");
    assert_eq!(tagged["mail"]["tags"]["flow"], serde_json::json!(["reset"]));
    assert_eq!(
        tagged["mail"]["tags"]["ses:configuration-set"],
        serde_json::json!(["tx"])
    );
    assert!(
        rig.fx
            .events()
            .iter()
            .any(|e| e["mail"]["messageId"] == cli_id.as_str())
    );

    // templates are durable: after kill -9 and a restart they are there
    service.kill().expect("kill -9");
    let _ = service.wait();
    let _service = start(&rig);
    let out = Command::new("aws")
        .args(["sesv2", "get-email-template", "--template-name", "Welcome"])
        .args(["--endpoint-url", &endpoint(&rig), "--region", "eu-west-1"])
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("aws");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Welcome aboard, {{name}}"));
    // and the recipient's unsubscribe is unchanged
    let got = Command::new(process::volley())
        .args([
            "suppression",
            "get",
            "optout@one.test",
            "--config",
            "config.toml",
        ])
        .current_dir(rig.fx.path())
        .output()
        .expect("volley suppression get");
    assert!(
        text(&got.stdout).contains("UNSUBSCRIBE"),
        "{}{}",
        text(&got.stdout),
        text(&got.stderr)
    );
}

#[test]
fn hostile_requests_get_errors_not_mail() {
    let rig = rig();
    let _service = start(&rig);
    let addr = format!("127.0.0.1:{}", rig.port);
    // unsigned, garbage signature, oversized, not JSON once signed
    let raw = |req: &str| -> String {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        s.write_all(req.as_bytes()).expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let unsigned = raw("GET /v2/email/account HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(unsigned.starts_with("HTTP/1.1 403"), "{unsigned}");
    assert!(
        unsigned
            .to_ascii_lowercase()
            .contains("x-amzn-errortype: missingauthenticationtokenexception"),
        "{unsigned}"
    );
    let garbage = raw(
        "POST /v2/email/outbound-emails HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 Credential=../;;, Signature=zz\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert!(garbage.starts_with("HTTP/1.1 403"), "{garbage}");
    // a signed request whose body is not JSON: boto3 cannot make one, so
    // sign it here with the module the bench uses and check the answer
    let body = "{not json";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let date = volley_engine::api::sigv4::amz_date(now);
    let headers = [("host", addr.as_str()), ("x-amz-date", date.as_str())];
    let auth = volley_engine::api::sigv4::sign(
        &volley_engine::api::sigv4::Request {
            method: "POST",
            raw_path: "/v2/email/outbound-emails",
            raw_query: "",
            headers: &headers,
            body: body.as_bytes(),
        },
        KEY,
        SECRET,
        "eu-west-1",
        "ses",
        &date,
    );
    let resp = raw(&format!(
        "POST /v2/email/outbound-emails HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Date: {date}\r\nAuthorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("BadRequestException"), "{resp}");
    // the same signature with a body changed in flight
    let resp = raw(&format!(
        "POST /v2/email/outbound-emails HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Date: {date}\r\nAuthorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{nit json",
        body.len()
    ));
    assert!(resp.contains("SignatureDoesNotMatch"), "{resp}");
    // a body declared larger than the limit: refused before it is read
    let resp = raw(&format!(
        "POST /v2/email/outbound-emails HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Date: {date}\r\nAuthorization: {auth}\r\nContent-Length: 70000000\r\nConnection: close\r\n\r\n"
    ));
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    // nothing was sent
    std::thread::sleep(Duration::from_millis(300));
    assert!(rig.sink.recipients().is_empty());
}

#[test]
fn https_when_a_certificate_is_configured() {
    let fx_cert = Fixture::new();
    volley_ok(
        &fx_cert,
        &[
            "tls-cert",
            "--name",
            "localhost",
            "--cert",
            "cert.pem",
            "--key",
            "key.pem",
        ],
    );
    let (cert, key) = (
        fx_cert.path().join("cert.pem"),
        fx_cert.path().join("key.pem"),
    );
    let rig = rig_with(&format!(
        "cert = \"{}\"\nkey = \"{}\"",
        cert.display(),
        key.display()
    ));
    let _service = start(&rig);
    let script = format!(
        "import boto3\nc = boto3.client('sesv2', endpoint_url='https://localhost:{}', region_name='eu-west-1', aws_access_key_id='{KEY}', aws_secret_access_key='{SECRET}', verify='{}')\nprint(c.get_account()['SendingEnabled'])\n",
        rig.port,
        cert.display()
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .expect("python3 (boto3)");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "True");
    // plain HTTP to the HTTPS port gets no answer that boto3 takes
    let plain = format!(
        "import boto3\nc = boto3.client('sesv2', endpoint_url='http://127.0.0.1:{}', region_name='eu-west-1', aws_access_key_id='{KEY}', aws_secret_access_key='{SECRET}', config=boto3.session.Config(retries={{'max_attempts': 1}}, connect_timeout=5, read_timeout=5))\ntry:\n    c.get_account(); print('answered')\nexcept Exception as e:\n    print('refused')\n",
        rig.port
    );
    let out = Command::new(python())
        .args(["-c", &plain])
        .output()
        .expect("python3");
    assert_eq!(text(&out.stdout).trim(), "refused", "{}", text(&out.stderr));
}

#[test]
fn accepted_messages_survive_kill_9() {
    // delivery held while the messages are accepted
    let rig = rig_with("[delivery]\nmessages_per_second = 0.001");
    let mut service = start(&rig);
    let script = format!(
        "import boto3, json\nc = boto3.client('sesv2', endpoint_url='http://127.0.0.1:{}', region_name='eu-west-1', aws_access_key_id='{KEY}', aws_secret_access_key='{SECRET}')\nids = [c.send_email(FromEmailAddress='news@shop.test', Destination={{'ToAddresses': ['k%d@one.test' % i]}}, Content={{'Simple': {{'Subject': {{'Data': 'kept %d' % i}}, 'Body': {{'Text': {{'Data': 'x'}}}}}}}})['MessageId'] for i in range(20)]\nprint(json.dumps(ids))\n",
        rig.port
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .expect("python3 (boto3)");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ids: Vec<String> = serde_json::from_slice(&out.stdout).expect("ids");
    assert_eq!(ids.len(), 20);
    // every MessageId answered is durable: kill -9, then deliver
    service.kill().expect("kill -9");
    let _ = service.wait();
    let config = rig.fx.path().join("config.toml");
    let text_before = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text_before.replace("messages_per_second = 0.001", "messages_per_second = 1000"),
    )
    .expect("config");
    let _service = start(&rig);
    wait_until(Duration::from_secs(60), "the 20 accepted messages", || {
        let mut r = rig.sink.recipients();
        r.sort();
        r.dedup();
        r.len() == 20
    });
    wait_until(Duration::from_secs(30), "their Delivery events", || {
        let events = rig.fx.events();
        ids.iter().all(|id| {
            events
                .iter()
                .any(|e| e["eventType"] == "Delivery" && e["mail"]["messageId"] == id.as_str())
        })
    });
}
