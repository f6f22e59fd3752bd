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
    (resp.metadata.response_code, resp.answers.clone())
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
