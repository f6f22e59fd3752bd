//! Negative answers of the test DNS server in constant time. hickory's
//! in-memory zone tells NODATA (the name exists) from NXDOMAIN (it does
//! not) by scanning every record of the zone, which costs milliseconds a
//! query at tens of thousands of records: the engine's address lookups ask
//! A and AAAA, so every lookup of a many-sites run met that scan. This
//! index answers the same from a hash map, and [`send_negative`] sends
//! such an answer.
//!
//! Input: the declared records and origins. Output: for a query, `None`
//! (the catalog answers: records of that type exist there, or the query is
//! of a kind the index does not answer) or the response code and the SOA
//! that goes in the authority section, as the catalog would give them:
//! NOERROR for a name that owns records or lies between such a name and
//! its origin (an empty non-terminal), NXDOMAIN otherwise. A name belongs
//! to the longest served origin that contains it. Exposure: queries come
//! from the engine under test only (loopback).

use std::collections::{HashMap, HashSet};
use std::iter;

use hickory_proto::op::{Edns, Metadata, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, Record, RecordType};
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::unsent;

/// Which names exist, with which record types, and each origin's SOA.
pub(super) struct Negatives {
    /// Owners of records (with their types) and the empty non-terminals
    /// between them and their origin (no types).
    names: HashMap<LowerName, HashSet<RecordType>>,
    /// Each served origin's SOA record (itself one of the records).
    soa: HashMap<LowerName, Record>,
}

impl Negatives {
    /// Indexes `records` (the origins' SOA records among them) under
    /// `origins`; records under no origin are left out (the catalog refuses
    /// them).
    pub(super) fn new(origins: &[Name], records: &[Record]) -> Negatives {
        let origins: Vec<LowerName> = origins.iter().map(LowerName::new).collect();
        let origin_of = |name: &LowerName| {
            origins
                .iter()
                .filter(|o| o.zone_of(name))
                .max_by_key(|o| o.num_labels())
                .cloned()
        };
        let mut names: HashMap<LowerName, HashSet<RecordType>> = HashMap::new();
        let mut soa = HashMap::new();
        for r in records {
            let owner = LowerName::new(&r.name);
            let Some(origin) = origin_of(&owner) else {
                continue;
            };
            if r.record_type() == RecordType::SOA && owner == origin {
                soa.insert(origin.clone(), r.clone());
            }
            names
                .entry(owner.clone())
                .or_default()
                .insert(r.record_type());
            let mut up = owner;
            while up != origin && !up.is_root() {
                up = up.base_name();
                names.entry(up.clone()).or_default();
            }
        }
        Negatives { names, soa }
    }

    /// The negative answer to `name`/`rtype`/`class`, when there is one
    /// and the index can give it.
    pub(super) fn answer(
        &self,
        name: &LowerName,
        rtype: RecordType,
        class: DNSClass,
    ) -> Option<(ResponseCode, &Record)> {
        if class != DNSClass::IN
            || matches!(
                rtype,
                RecordType::ANY | RecordType::AXFR | RecordType::IXFR | RecordType::CNAME
            )
        {
            return None;
        }
        let origin = self
            .soa
            .keys()
            .filter(|o| o.zone_of(name))
            .max_by_key(|o| o.num_labels())?;
        let soa = &self.soa[origin];
        match self.names.get(name) {
            None => Some((ResponseCode::NXDomain, soa)),
            // a CNAME would answer any type: leave those to the catalog
            Some(types) if types.contains(&rtype) || types.contains(&RecordType::CNAME) => None,
            Some(_) => Some((ResponseCode::NoError, soa)),
        }
    }
}

/// Answers `request` with `rcode`, no records and the zone's `soa` in the
/// authority section (a negative answer, RFC 2308), as the catalog would.
pub(super) async fn send_negative<R: ResponseHandler>(
    request: &Request,
    rcode: ResponseCode,
    soa: &Record,
    mut response: R,
) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = rcode;
    metadata.authoritative = true;
    let edns = request.edns.as_ref().map(|asked| {
        let mut e = Edns::new();
        e.set_max_payload(asked.max_payload().max(512));
        e.set_version(0);
        e
    });
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(e) = &edns {
        builder.edns(e);
    }
    let msg = builder.build(
        metadata,
        iter::empty(),
        iter::empty(),
        iter::once(soa),
        iter::empty(),
    );
    match response.send_response(msg).await {
        Ok(info) => info,
        Err(_) => unsent(request, rcode),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::{A, MX, SOA};

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn index() -> Negatives {
        let soa = |o: &str| {
            Record::from_rdata(
                name(o),
                300,
                RData::SOA(SOA::new(name("ns.x."), name("h.x."), 1, 1, 1, 1, 60)),
            )
        };
        let records = vec![
            soa("test."),
            soa("sub.test."),
            Record::from_rdata(
                name("a.test."),
                300,
                RData::MX(MX::new(10, name("mx.deep.a.test."))),
            ),
            Record::from_rdata(
                name("mx.deep.a.test."),
                300,
                RData::A(A(Ipv4Addr::LOCALHOST)),
            ),
            Record::from_rdata(name("h.sub.test."), 300, RData::A(A(Ipv4Addr::LOCALHOST))),
            Record::from_rdata(name("else.org."), 300, RData::A(A(Ipv4Addr::LOCALHOST))),
        ];
        Negatives::new(&[name("test."), name("sub.test.")], &records)
    }

    fn ask(n: &Negatives, q: &str, t: RecordType) -> Option<(ResponseCode, String)> {
        n.answer(&LowerName::new(&name(q)), t, DNSClass::IN)
            .map(|(rc, soa)| (rc, soa.name.to_string()))
    }

    #[test]
    fn records_of_the_type_asked_are_left_to_the_catalog() {
        let n = index();
        assert_eq!(ask(&n, "a.test.", RecordType::MX), None);
        assert_eq!(ask(&n, "MX.Deep.A.test.", RecordType::A), None);
        assert_eq!(ask(&n, "test.", RecordType::SOA), None);
        assert_eq!(ask(&n, "a.test.", RecordType::ANY), None);
    }

    #[test]
    fn nodata_for_existing_names_and_empty_non_terminals() {
        let n = index();
        let nodata = Some((ResponseCode::NoError, "test.".to_string()));
        assert_eq!(ask(&n, "a.test.", RecordType::A), nodata);
        assert_eq!(ask(&n, "mx.deep.a.test.", RecordType::AAAA), nodata);
        assert_eq!(
            ask(&n, "deep.a.test.", RecordType::A),
            nodata,
            "empty non-terminal"
        );
        assert_eq!(ask(&n, "test.", RecordType::MX), nodata);
    }

    #[test]
    fn nxdomain_with_the_soa_of_the_longest_origin() {
        let n = index();
        assert_eq!(
            ask(&n, "gone.test.", RecordType::A),
            Some((ResponseCode::NXDomain, "test.".to_string()))
        );
        assert_eq!(
            ask(&n, "x.sub.test.", RecordType::A),
            Some((ResponseCode::NXDomain, "sub.test.".to_string()))
        );
        assert_eq!(
            ask(&n, "h.sub.test.", RecordType::AAAA),
            Some((ResponseCode::NoError, "sub.test.".to_string()))
        );
        // under no origin: the catalog refuses it
        assert_eq!(ask(&n, "else.org.", RecordType::AAAA), None);
    }
}
