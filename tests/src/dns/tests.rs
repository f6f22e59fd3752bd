//! Checks of the test DNS server, asked over UDP and TCP: records,
//! negative answers and SERVFAIL as the zones say.

use super::*;

/// Asks `server` one question over UDP, or TCP; returns (rcode,
/// answers).
fn ask_via(
    tcp: bool,
    server: SocketAddr,
    name: &str,
    rtype: hickory_proto::rr::RecordType,
) -> (ResponseCode, Vec<Record>) {
    let resp = ask_message(tcp, server, name, rtype);
    (resp.metadata.response_code, resp.answers)
}

/// Asks `server` one question over UDP, or TCP; returns the answer.
fn ask_message(
    tcp: bool,
    server: SocketAddr,
    name: &str,
    rtype: hickory_proto::rr::RecordType,
) -> hickory_proto::op::Message {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
    use std::io::{Read, Write};
    let mut msg = Message::query();
    msg.add_query(Query::query(fqdn(name), rtype));
    msg.metadata.id = 4242;
    let bytes = msg.to_bytes().expect("encode query");
    let answer = if tcp {
        let mut s = std::net::TcpStream::connect(server).expect("TCP connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let len = u16::try_from(bytes.len()).expect("query size");
        s.write_all(&len.to_be_bytes()).expect("send length");
        s.write_all(&bytes).expect("send query");
        let mut len = [0u8; 2];
        s.read_exact(&mut len).expect("answer length");
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).expect("DNS answer");
        buf
    } else {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("client socket");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        sock.send_to(&bytes, server).expect("send query");
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("DNS answer");
        buf[..n].to_vec()
    };
    let resp = Message::from_bytes(&answer).expect("decode answer");
    assert_eq!(resp.metadata.id, 4242);
    resp
}

fn ask(
    server: SocketAddr,
    name: &str,
    rtype: hickory_proto::rr::RecordType,
) -> (ResponseCode, Vec<Record>) {
    ask_via(false, server, name, rtype)
}

#[test]
fn answers_records_negatives_and_servfail() {
    use hickory_proto::rr::RecordType;
    let dns = DnsServer::start(
        Zones::new("test")
            .mx("a.test", 10, "mx.a.test")
            .a("mx.a.test", Ipv4Addr::new(127, 0, 0, 9))
            .null_mx("null.test")
            .servfail("broken.test")
            .nxdomain("gone.test"),
    );
    let (rc, ans) = ask(dns.addr, "a.test", RecordType::MX);
    assert_eq!(rc, ResponseCode::NoError);
    assert_eq!(ans.len(), 1);
    assert!(
        matches!(&ans[0].data, RData::MX(mx) if mx.preference == 10 && mx.exchange == fqdn("mx.a.test"))
    );
    let (rc, ans) = ask(dns.addr, "mx.a.test", RecordType::A);
    assert_eq!(rc, ResponseCode::NoError);
    assert!(matches!(&ans[0].data, RData::A(a) if a.0 == Ipv4Addr::new(127, 0, 0, 9)));
    let (rc, ans) = ask(dns.addr, "null.test", RecordType::MX);
    assert_eq!(rc, ResponseCode::NoError);
    assert!(matches!(&ans[0].data, RData::MX(mx) if mx.exchange.is_root()));
    assert_eq!(
        ask(dns.addr, "gone.test", RecordType::MX).0,
        ResponseCode::NXDomain
    );
    let (rc, ans) = ask(dns.addr, "mx.a.test", RecordType::MX);
    assert_eq!((rc, ans.len()), (ResponseCode::NoError, 0), "NODATA");
    assert_eq!(
        ask(dns.addr, "broken.test", RecordType::MX).0,
        ResponseCode::ServFail
    );
    assert_eq!(
        ask(dns.addr, "broken.test", RecordType::A).0,
        ResponseCode::ServFail
    );
    // the same over TCP
    let (rc, ans) = ask_via(true, dns.addr, "a.test", RecordType::MX);
    assert_eq!((rc, ans.len()), (ResponseCode::NoError, 1));
    assert_eq!(
        ask_via(true, dns.addr, "broken.test", RecordType::MX).0,
        ResponseCode::ServFail
    );
}

/// The SOA of the zone that answers negatively (RFC 2308), if any.
fn negative_soa(m: &hickory_proto::op::Message) -> Option<String> {
    m.authorities
        .iter()
        .find(|r| matches!(r.data, RData::SOA(_)))
        .map(|r| r.name.to_string())
}

#[test]
fn negative_answers_are_authoritative_with_the_zones_soa() {
    use hickory_proto::rr::RecordType;
    let dns = DnsServer::start(
        Zones::new("test")
            .origin("sub.test")
            .mx("a.test", 10, "mx.deep.a.test")
            .a("mx.deep.a.test", Ipv4Addr::new(127, 0, 0, 9))
            .a("h.sub.test", Ipv4Addr::new(127, 0, 0, 9)),
    );
    let cases = [
        ("a.test", RecordType::A, ResponseCode::NoError, "test."),
        (
            "mx.deep.a.test",
            RecordType::AAAA,
            ResponseCode::NoError,
            "test.",
        ),
        ("deep.a.test", RecordType::A, ResponseCode::NoError, "test."),
        (
            "nothing.test",
            RecordType::MX,
            ResponseCode::NXDomain,
            "test.",
        ),
        (
            "h.sub.test",
            RecordType::AAAA,
            ResponseCode::NoError,
            "sub.test.",
        ),
        (
            "x.sub.test",
            RecordType::A,
            ResponseCode::NXDomain,
            "sub.test.",
        ),
    ];
    for tcp in [false, true] {
        for (name, rtype, rcode, zone) in cases {
            let m = ask_message(tcp, dns.addr, name, rtype);
            let got = (
                m.metadata.response_code,
                m.answers.len(),
                m.metadata.authoritative,
            );
            assert_eq!(got, (rcode, 0, true), "{name} {rtype}");
            assert_eq!(negative_soa(&m).as_deref(), Some(zone), "{name} {rtype}");
        }
    }
    // positive answers still come from the zone
    let (rc, ans) = ask(dns.addr, "A.test", RecordType::MX);
    assert_eq!((rc, ans.len()), (ResponseCode::NoError, 1));
}

/// A query for `name`/`rtype` with `id`, encoded.
fn query(id: u16, name: &str, rtype: hickory_proto::rr::RecordType) -> Vec<u8> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::serialize::binary::BinEncodable;
    let mut msg = Message::query();
    msg.add_query(Query::query(fqdn(name), rtype));
    msg.metadata.id = id;
    msg.to_bytes().expect("encode query")
}

/// What a many-sites run asks: for thousands of domains at once, their MX
/// and their hosts' addresses (A and AAAA, the latter absent). Every query
/// of the burst is answered (none dropped for a full socket buffer), each
/// with the record asked for or the zone's negative answer.
#[test]
fn answers_a_burst_of_ten_thousand_queries_over_udp() {
    use hickory_proto::op::Message;
    use hickory_proto::rr::RecordType;
    use hickory_proto::serialize::binary::BinDecodable;
    const N: usize = 10_000;
    let mut zones = Zones::new("many.test");
    for d in 0..N {
        zones = zones
            .mx(&format!("d{d}.many.test"), 10, &format!("mx{d}.many.test"))
            .a(&format!("mx{d}.many.test"), Ipv4Addr::new(127, 0, 0, 2));
    }
    let dns = DnsServer::start(zones);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("client socket");
    // the test's own socket must hold the burst of answers too
    large_receive_buffer(&sock);
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let rx = sock.try_clone().expect("client socket clone");
    let answers = std::thread::spawn(move || {
        let mut got = std::collections::BTreeMap::new();
        let mut buf = [0u8; 4096];
        while got.len() < N {
            let Ok(n) = rx.recv(&mut buf) else {
                break; // nothing for 10 s: the rest was lost
            };
            let m = Message::from_bytes(&buf[..n]).expect("decode answer");
            let what = match m.answers.first().map(|r| &r.data) {
                Some(RData::MX(mx)) => mx.exchange.to_string(),
                None => format!("{:?} {:?}", m.metadata.response_code, negative_soa(&m)),
                Some(other) => panic!("answer {}: {other:?}", m.metadata.id),
            };
            got.insert(m.metadata.id, what);
        }
        got
    });
    for d in 0..N {
        let q = if d % 2 == 0 {
            query(d as u16, &format!("d{d}.many.test"), RecordType::MX)
        } else {
            query(d as u16, &format!("mx{d}.many.test"), RecordType::AAAA)
        };
        sock.send_to(&q, dns.addr).expect("send query");
    }
    let got = answers.join().expect("receiving thread");
    assert_eq!(got.len(), N, "answers to a burst of {N} queries");
    for (id, what) in got {
        if id % 2 == 0 {
            assert_eq!(what, format!("mx{id}.many.test."));
        } else {
            assert_eq!(what, "NoError Some(\"many.test.\")", "{id}");
        }
    }
}
