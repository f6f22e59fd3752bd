//! The SNS endpoints of the HTTP listener, as pure request → answer
//! functions: `GET /sns?Action=ConfirmSubscription&TopicArn=…&Token=…`
//! (the `SubscribeURL`), `GET /sns?Action=Unsubscribe&SubscriptionArn=…`
//! (the `UnsubscribeURL`), answered with SNS's XML; the certificate is
//! served by the listener itself. Exposure: the query string (hostile:
//! any value gets an XML error naming the problem, escaped).

use super::Subscriptions;
use super::subscriptions::{SubscriptionError, uuid_like};

const NS: &str = "http://sns.amazonaws.com/doc/2010-03-31/";

/// Decodes a query string into (name, value) pairs (`+` is a space,
/// `%XX` a byte; invalid escapes stay as they are).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match u8::from_str_radix(
                        std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"),
                        16,
                    ) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn error(status: u16, code: &str, message: &str) -> (u16, String) {
    (
        status,
        format!(
            "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>\n",
            escape(message),
            uuid_like()
        ),
    )
}

/// The answer (status, XML body) to `GET /sns?…`.
pub fn answer(subs: &Subscriptions, query: &str) -> (u16, String) {
    let q = parse_query(query);
    let get = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match get("Action") {
        Some("ConfirmSubscription") => {
            let (Some(topic), Some(token)) = (get("TopicArn"), get("Token")) else {
                return error(400, "InvalidParameter", "TopicArn and Token are required");
            };
            match subs.confirm(topic, token) {
                Ok(arn) => (
                    200,
                    format!(
                        "<ConfirmSubscriptionResponse xmlns=\"{NS}\"><ConfirmSubscriptionResult><SubscriptionArn>{}</SubscriptionArn></ConfirmSubscriptionResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></ConfirmSubscriptionResponse>\n",
                        escape(&arn),
                        uuid_like()
                    ),
                ),
                Err(e @ SubscriptionError::Store(_)) => error(500, "InternalError", &e.to_string()),
                Err(e) => error(404, "NotFound", &e.to_string()),
            }
        }
        Some("Unsubscribe") => {
            let Some(arn) = get("SubscriptionArn") else {
                return error(400, "InvalidParameter", "SubscriptionArn is required");
            };
            match subs.unsubscribe(arn) {
                Ok(()) => (
                    200,
                    format!(
                        "<UnsubscribeResponse xmlns=\"{NS}\"><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></UnsubscribeResponse>\n",
                        uuid_like()
                    ),
                ),
                Err(e @ SubscriptionError::Store(_)) => error(500, "InternalError", &e.to_string()),
                Err(e) => error(404, "NotFound", &e.to_string()),
            }
        }
        Some(other) => error(400, "InvalidAction", &format!("unknown Action {other:?}")),
        None => error(400, "MissingAction", "Action is required"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        assert_eq!(
            parse_query("a=1&TopicArn=arn%3Aaws%3Asns&x=a+b&bad=%zz&t=%4"),
            vec![
                ("a".into(), "1".into()),
                ("TopicArn".into(), "arn:aws:sns".into()),
                ("x".into(), "a b".into()),
                ("bad".into(), "%zz".into()),
                ("t".into(), "%4".into()),
            ]
        );
    }

    #[test]
    fn confirmation_and_unsubscription_answer_with_snss_xml() {
        let d = tempfile::tempdir().unwrap();
        let subs = Subscriptions::open(d.path());
        let topic = "arn:aws:sns:us-east-1:000000000000:main";
        let s = subs.ensure("dest.main.h", "http://x/", topic).unwrap();
        let q = format!(
            "Action=ConfirmSubscription&TopicArn={}&Token={}",
            super::super::encode(topic),
            s.token
        );
        let (status, body) = answer(&subs, &q);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!(
            "<SubscriptionArn>{}</SubscriptionArn>",
            s.subscription_arn
        )));
        assert!(subs.confirmed("dest.main.h"));
        let (status, body) = answer(&subs, "Action=ConfirmSubscription&TopicArn=<x>&Token=1");
        assert_eq!(status, 404);
        assert!(
            body.contains("&lt;x&gt;") && !body.contains("<x>"),
            "{body}"
        );
        assert_eq!(answer(&subs, "Action=ConfirmSubscription").0, 400);
        assert_eq!(answer(&subs, "Action=Publish").0, 400);
        assert_eq!(answer(&subs, "").0, 400);
        let q = format!(
            "Action=Unsubscribe&SubscriptionArn={}",
            super::super::encode(&s.subscription_arn)
        );
        assert_eq!(answer(&subs, &q).0, 200);
        assert!(!subs.confirmed("dest.main.h"));
        assert_eq!(
            answer(&subs, "Action=Unsubscribe&SubscriptionArn=nope").0,
            404
        );
    }
}
