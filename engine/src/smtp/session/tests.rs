//! Unit tests of the SMTP session over in-memory pipes: a 421 ends the
//! session, a failed RSET keeps the decided replies, dot-stuffing.

use super::*;
use tokio::io::AsyncReadExt;

/// A session over an in-memory pipe whose server side answers each
/// client write with the next of `replies` (then closes).
fn scripted(
    pipelining: bool,
    replies: &'static [&'static [u8]],
) -> (Session, tokio::task::JoinHandle<Vec<u8>>) {
    let (client, mut server) = tokio::io::duplex(1 << 16);
    let caps = Caps {
        pipelining,
        size: None,
        tls: false,
    };
    let session = Session::new(Box::new(client), caps, Timeouts::default());
    let server = tokio::spawn(async move {
        let mut got = Vec::new();
        for r in replies {
            let mut buf = vec![0u8; 1 << 16];
            let n = server.read(&mut buf).await.unwrap_or(0);
            got.extend_from_slice(&buf[..n]);
            if server.write_all(r).await.is_err() {
                break;
            }
        }
        got
    });
    (session, server)
}

#[tokio::test]
async fn a_421_ends_the_session_with_its_reply() {
    // pipelined: 421 to MAIL, then the server closes
    let (mut s, server) = scripted(true, &[b"421 4.7.0 Too many messages, closing\r\n"]);
    let e = s
        .send("a@x.test", &["b@y.test", "c@y.test"], b"x\r\n.\r\n")
        .await
        .unwrap_err();
    assert_eq!(
        e,
        SessionError::Refused(
            Phase::Mail,
            Reply::new(421, [4, 7, 0], "Too many messages, closing")
        )
    );
    drop(s);
    let sent = server.await.unwrap();
    assert!(sent.starts_with(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n"));
    // lock-step: 421 at end of data
    let (mut s, _server) = scripted(
        false,
        &[
            b"250 2.1.0 Ok\r\n",
            b"250 2.1.5 Ok\r\n",
            b"354 go\r\n",
            b"421 4.3.2 Shutting down\r\n",
        ],
    );
    let e = s
        .send("a@x.test", &["b@y.test"], b"x\r\n.\r\n")
        .await
        .unwrap_err();
    assert!(
        matches!(e, SessionError::Refused(Phase::DataEnd, ref r) if r.code == 421),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_failed_rset_keeps_the_decided_replies_and_ends_the_session() {
    let (mut s, _server) = scripted(
        true,
        &[
            b"250 2.1.0 Ok\r\n550 5.1.1 No such user\r\n554 5.5.1 No valid recipients\r\n",
            b"421 4.7.0 Closing\r\n",
        ],
    );
    let replies = s
        .send("a@x.test", &["b@y.test"], b"x\r\n.\r\n")
        .await
        .expect("the transaction was decided");
    assert_eq!(
        replies,
        vec![(Phase::Rcpt, Reply::new(550, [5, 1, 1], "No such user"))]
    );
    assert!(
        matches!(s.take_broken(), Some(SessionError::Refused(Phase::Rset, ref r)) if r.code == 421)
    );
    assert_eq!(s.take_broken(), None);
}

#[test]
fn dot_stuffing() {
    let mut out = Vec::new();
    dot_stuff(b".a\r\nb\r\n.\r\n..c", &mut out);
    assert_eq!(out, b"..a\r\nb\r\n..\r\n...c\r\n.\r\n");
    let mut out = Vec::new();
    dot_stuff(b"x\r\n", &mut out);
    assert_eq!(out, b"x\r\n.\r\n");
    // parts: a line start carries across the boundary
    for split in 0..=17 {
        let msg = b".a\r\nb\r\n.\r\n..c\r\n";
        let (a, b) = msg.split_at(split.min(msg.len()));
        let (mut whole, mut parted) = (Vec::new(), Vec::new());
        dot_stuff(msg, &mut whole);
        dot_stuff_parts(&[a, b], &mut parted);
        assert_eq!(whole, parted, "split at {split}");
    }
}

#[test]
fn every_line_end_goes_out_as_crlf_and_is_stuffed() {
    // a bare CR or LF is a line end: no bare one reaches the wire, and a dot
    // after it is doubled, so it can never end the data early
    let mut out = Vec::new();
    dot_stuff(b"a\r.\rMAIL FROM:<x@e.test>\n.\n.\r\nz", &mut out);
    assert_eq!(
        out,
        b"a\r\n..\r\nMAIL FROM:<x@e.test>\r\n..\r\n..\r\nz\r\n.\r\n"
    );
    let msg = b"x\ry\r\n.\r\r\n\n.z\r";
    let mut whole = Vec::new();
    dot_stuff(msg, &mut whole);
    assert_eq!(whole, b"x\r\ny\r\n..\r\n\r\n\r\n..z\r\n.\r\n");
    // the same across part boundaries (a CRLF split between two parts
    // stays one line end), with empty parts in between
    for split in 0..=msg.len() {
        let (a, b) = msg.split_at(split);
        let mut parted = Vec::new();
        dot_stuff_parts(&[a, b"", b], &mut parted);
        assert_eq!(whole, parted, "split at {split}");
    }
}

#[tokio::test]
async fn the_next_transaction_goes_out_behind_the_message_and_is_not_written_again() {
    let (mut s, server) = scripted(
        true,
        &[
            b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n",
            // end of the first message, then the second's MAIL, RCPTs, DATA
            b"250 2.0.0 queued one\r\n250 2.1.0 Ok\r\n550 5.1.1 No such user\r\n250 2.1.5 Ok\r\n354 go\r\n",
            b"250 2.0.0 queued two\r\n",
        ],
    );
    let next = Follow {
        from: "n@x.test",
        rcpts: &["bad@y.test", "d@y.test"],
        len: 9,
    };
    assert!(s.can_follow(&next));
    let (first, followed) = s
        .send_then(
            "a@x.test",
            &["b@y.test"],
            &[b"one\r\n", b".\r\n"],
            Some(next),
        )
        .await
        .unwrap();
    assert!(followed);
    assert_eq!(first[0].0, Phase::DataEnd);
    assert_eq!(first[0].1.text, "queued one");
    let (second, followed) = s
        .send_then(
            "n@x.test",
            &["bad@y.test", "d@y.test"],
            &[b"two\r\n.\r\n"],
            None,
        )
        .await
        .unwrap();
    assert!(!followed);
    assert_eq!(second[0].0, Phase::Rcpt);
    assert_eq!(second[0].1.code, 550);
    assert_eq!(
        (second[1].0, second[1].1.text.as_str()),
        (Phase::DataEnd, "queued two")
    );
    drop(s);
    let sent = String::from_utf8(server.await.unwrap()).unwrap();
    assert_eq!(
        sent,
        "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\none\r\n.\r\nMAIL FROM:<n@x.test>\r\nRCPT TO:<bad@y.test>\r\nRCPT TO:<d@y.test>\r\nDATA\r\ntwo\r\n.\r\n"
    );
}

#[tokio::test]
async fn a_421_after_the_message_speaks_of_that_message_alone() {
    let (mut s, server) = scripted(
        true,
        &[
            b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n",
            b"421 4.3.2 Shutting down\r\n",
        ],
    );
    let next = Follow {
        from: "n@x.test",
        rcpts: &["d@y.test"],
        len: 9,
    };
    let e = s
        .send_then("a@x.test", &["b@y.test"], &[b"one\r\n.\r\n"], Some(next))
        .await
        .unwrap_err();
    assert!(
        matches!(e, SessionError::Refused(Phase::DataEnd, ref r) if r.code == 421),
        "{e:?}"
    );
    drop(s);
    let sent = String::from_utf8(server.await.unwrap()).unwrap();
    assert!(sent.ends_with("one\r\n.\r\nMAIL FROM:<n@x.test>\r\nRCPT TO:<d@y.test>\r\nDATA\r\n"));
}

#[tokio::test]
async fn nothing_follows_a_lock_step_session_or_an_oversized_message() {
    let (mut s, _server) = scripted(
        false,
        &[
            b"250 2.1.0 Ok\r\n",
            b"250 2.1.5 Ok\r\n",
            b"354 go\r\n",
            b"250 2.0.0 queued\r\n",
        ],
    );
    let next = Follow {
        from: "n@x.test",
        rcpts: &["d@y.test"],
        len: 9,
    };
    assert!(!s.can_follow(&next));
    let (_, followed) = s
        .send_then("a@x.test", &["b@y.test"], &[b"one\r\n.\r\n"], Some(next))
        .await
        .unwrap();
    assert!(!followed);
    let (client, _server) = tokio::io::duplex(1 << 10);
    let caps = Caps {
        pipelining: true,
        size: Some(100),
        tls: false,
    };
    let s = Session::new(Box::new(client), caps, Timeouts::default());
    assert!(!s.can_follow(&Follow { len: 101, ..next }));
    assert!(s.can_follow(&Follow { len: 100, ..next }));
}
