//! SNS HTTP/S messages (`shared/reference/ses.md` §4): the `Notification`
//! that carries an SES event and the `SubscriptionConfirmation` that
//! comes first, as JSON with SNS's fields, signed with SignatureVersion 2
//! (SHA256withRSA over SNS's canonical string: the fields' names and
//! values, one per line, in byte order of the names), so that SNS message
//! validators accept them with the certificate at `SigningCertURL`.
//!
//! Pure but for the signature ([`Signer`], the key and certificate).
//! Exposure: none (output only).

pub mod endpoints;
pub mod signer;
pub mod subscriptions;

pub use signer::Signer;
pub use subscriptions::{Subscription, SubscriptionError, Subscriptions};

use serde::Serialize;

/// The path (under the public URL) where the signing certificate is
/// served.
pub const CERT_PATH: &str = "/sns/SimpleNotificationService-volley.pem";
/// The path of the SubscribeURL and UnsubscribeURL links.
pub const ACTION_PATH: &str = "/sns";

/// What every message of one subscription shares.
#[derive(Debug, Clone)]
pub struct Topic {
    pub topic_arn: String,
    /// The subscription's ARN (`TopicArn:uuid`).
    pub subscription_arn: String,
    /// Where links point: the service's public URL (no trailing `/`).
    pub public_url: String,
}

impl Topic {
    pub fn signing_cert_url(&self) -> String {
        format!("{}{CERT_PATH}", self.public_url)
    }

    pub fn unsubscribe_url(&self) -> String {
        format!(
            "{}{ACTION_PATH}?Action=Unsubscribe&SubscriptionArn={}",
            self.public_url,
            encode(&self.subscription_arn)
        )
    }

    pub fn subscribe_url(&self, token: &str) -> String {
        format!(
            "{}{ACTION_PATH}?Action=ConfirmSubscription&TopicArn={}&Token={}",
            self.public_url,
            encode(&self.topic_arn),
            encode(token)
        )
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An SNS message as it is posted (field names as SNS writes them).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Message {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    #[serde(rename = "MessageId")]
    pub message_id: String,
    #[serde(rename = "Token", skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(rename = "TopicArn")]
    pub topic_arn: String,
    #[serde(rename = "Message")]
    pub message: String,
    #[serde(rename = "SubscribeURL", skip_serializing_if = "Option::is_none")]
    pub subscribe_url: Option<String>,
    #[serde(rename = "Timestamp")]
    pub timestamp: String,
    #[serde(rename = "SignatureVersion")]
    pub signature_version: &'static str,
    #[serde(rename = "Signature")]
    pub signature: String,
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    #[serde(rename = "UnsubscribeURL", skip_serializing_if = "Option::is_none")]
    pub unsubscribe_url: Option<String>,
}

/// The body of a notification of `event` (SES event JSON) with `id`.
pub fn notification_body(
    topic: &Topic,
    id: &str,
    event: &[u8],
    timestamp: &str,
    signer: &Signer,
) -> Vec<u8> {
    let event = String::from_utf8_lossy(event).into_owned();
    let m = Message::notification(topic, id.to_string(), event, timestamp.to_string(), signer);
    serde_json::to_vec(&m).unwrap_or_default()
}

impl Message {
    /// A `Notification` carrying `event` (the SES event JSON), signed.
    pub fn notification(
        topic: &Topic,
        id: String,
        event: String,
        timestamp: String,
        signer: &Signer,
    ) -> Message {
        let mut m = Message {
            kind: "Notification",
            message_id: id,
            token: None,
            topic_arn: topic.topic_arn.clone(),
            message: event,
            subscribe_url: None,
            timestamp,
            signature_version: "2",
            signature: String::new(),
            signing_cert_url: topic.signing_cert_url(),
            unsubscribe_url: Some(topic.unsubscribe_url()),
        };
        m.signature = signer.sign(&m.string_to_sign());
        m
    }

    /// The `SubscriptionConfirmation` of a subscription with `token`.
    pub fn confirmation(
        topic: &Topic,
        id: String,
        token: &str,
        timestamp: String,
        signer: &Signer,
    ) -> Message {
        let mut m = Message {
            kind: "SubscriptionConfirmation",
            message_id: id,
            token: Some(token.to_string()),
            topic_arn: topic.topic_arn.clone(),
            message: format!(
                "You have chosen to subscribe to the topic {}.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
                topic.topic_arn
            ),
            subscribe_url: Some(topic.subscribe_url(token)),
            timestamp,
            signature_version: "2",
            signature: String::new(),
            signing_cert_url: topic.signing_cert_url(),
            unsubscribe_url: None,
        };
        m.signature = signer.sign(&m.string_to_sign());
        m
    }

    /// SNS's canonical string: for a notification `Message`, `MessageId`,
    /// (`Subject`), `Timestamp`, `TopicArn`, `Type`; for a confirmation
    /// also `SubscribeURL` and `Token`; each as name and value lines.
    pub fn string_to_sign(&self) -> String {
        let mut fields: Vec<(&str, &str)> = vec![
            ("Message", &self.message),
            ("MessageId", &self.message_id),
            ("Timestamp", &self.timestamp),
            ("TopicArn", &self.topic_arn),
            ("Type", self.kind),
        ];
        if let Some(u) = &self.subscribe_url {
            fields.push(("SubscribeURL", u));
        }
        if let Some(t) = &self.token {
            fields.push(("Token", t));
        }
        fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut out = String::new();
        for (k, v) in fields {
            out.push_str(k);
            out.push('\n');
            out.push_str(v);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic() -> Topic {
        Topic {
            topic_arn: "arn:aws:sns:us-east-1:000000000000:main".into(),
            subscription_arn: "arn:aws:sns:us-east-1:000000000000:main:5f0c".into(),
            public_url: "http://127.0.0.1:8025".into(),
        }
    }

    #[test]
    fn notifications_sign_snss_canonical_string() {
        let signer = Signer::generate().unwrap();
        let m = Message::notification(
            &topic(),
            "id-1".into(),
            "{\"eventType\":\"Send\"}".into(),
            "2026-12-01T00:00:00.000Z".into(),
            &signer,
        );
        assert_eq!(
            m.string_to_sign(),
            "Message\n{\"eventType\":\"Send\"}\nMessageId\nid-1\nTimestamp\n2026-12-01T00:00:00.000Z\nTopicArn\narn:aws:sns:us-east-1:000000000000:main\nType\nNotification\n"
        );
        assert!(signer.verify(&m.string_to_sign(), &m.signature));
        assert!(!signer.verify("Message\nother\n", &m.signature));
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["Type"], "Notification");
        assert_eq!(v["SignatureVersion"], "2");
        assert_eq!(
            v["SigningCertURL"],
            "http://127.0.0.1:8025/sns/SimpleNotificationService-volley.pem"
        );
        assert!(v.get("Token").is_none() && v.get("SubscribeURL").is_none());
        assert!(
            v["UnsubscribeURL"]
                .as_str()
                .unwrap()
                .ends_with("Action=Unsubscribe&SubscriptionArn=arn%3Aaws%3Asns%3Aus-east-1%3A000000000000%3Amain%3A5f0c")
        );
    }

    #[test]
    fn confirmations_carry_token_and_subscribe_url_in_the_signature() {
        let signer = Signer::generate().unwrap();
        let m = Message::confirmation(
            &topic(),
            "id-2".into(),
            "tok",
            "2026-12-01T00:00:00.000Z".into(),
            &signer,
        );
        let s = m.string_to_sign();
        let url = "http://127.0.0.1:8025/sns?Action=ConfirmSubscription&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A000000000000%3Amain&Token=tok";
        assert_eq!(
            s,
            format!(
                "Message\n{}\nMessageId\nid-2\nSubscribeURL\n{url}\nTimestamp\n2026-12-01T00:00:00.000Z\nToken\ntok\nTopicArn\narn:aws:sns:us-east-1:000000000000:main\nType\nSubscriptionConfirmation\n",
                m.message
            )
        );
        assert!(signer.verify(&s, &m.signature));
        assert!(
            m.subscribe_url
                .unwrap()
                .contains("Action=ConfirmSubscription")
        );
    }
}
