//! The classic SES query API (version 2010-12-01), which many mail
//! libraries still call: `POST /` with a form-encoded `Action`, answered in
//! XML. The sending actions map onto the v2 requests and share their whole
//! path ([`super::send`]): `SendEmail`, `SendRawEmail`,
//! `SendTemplatedEmail` (templates made through the v2 operations) and
//! `SendBulkTemplatedEmail`. Errors are the query protocol's
//! `ErrorResponse` with SES v1's codes (`MessageRejected`,
//! `InvalidParameterValue`, `TemplateDoesNotExist`,
//! `ConfigurationSetDoesNotExist`, `Throttling`, ...). Exposure: signed
//! callers over the network; every field is checked by the shared path.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::content::{Body, Destination, EmailContent, RawMessage, Simple, Tag, Template, Text};
use super::error::ApiError;
use super::send::{self, BulkContent, BulkEntry, ReplacementContent, ReplacementTemplate};
use super::send::{SendBulkRequest, SendEmailRequest};
use super::{Ctx, Principal};

const NS: &str = "http://ses.amazonaws.com/doc/2010-12-01/";
/// Most form fields of one request (50 entries of 50 recipients and
/// their tags fit well within it).
const MAX_FIELDS: usize = 20_000;

/// A decoded form (`application/x-www-form-urlencoded`: `+` is a space).
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(raw: &[u8]) -> Form {
        let text = String::from_utf8_lossy(raw);
        let dec = |s: &str| {
            let bytes = super::sigv4::percent_decode(&s.replace('+', " "));
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Form(
            text.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (dec(k), dec(v))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn string(&self, key: &str) -> Option<String> {
        self.get(key).map(str::to_string)
    }

    /// `prefix.member.1`, `prefix.member.2`, ... in order.
    fn members(&self, prefix: &str) -> Vec<String> {
        let head = format!("{prefix}.member.");
        let mut m: Vec<(u32, String)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let n = k.strip_prefix(&head)?.parse().ok()?;
                Some((n, v.clone()))
            })
            .collect();
        m.sort_by_key(|(n, _)| *n);
        m.into_iter().map(|(_, v)| v).collect()
    }

    /// The indices N of the `prefix.member.N.*` entries present, in order
    /// (as many as the form has fields, whatever the numbers say).
    fn indices(&self, prefix: &str) -> Vec<u32> {
        let head = format!("{prefix}.member.");
        let mut n: Vec<u32> = self
            .0
            .iter()
            .filter_map(|(k, _)| k.strip_prefix(&head)?.split('.').next()?.parse().ok())
            .collect();
        n.sort_unstable();
        n.dedup();
        n
    }

    fn tags(&self, prefix: &str) -> Vec<Tag> {
        self.indices(prefix)
            .into_iter()
            .filter_map(|i| {
                Some(Tag {
                    name: self.string(&format!("{prefix}.member.{i}.Name"))?,
                    value: self
                        .string(&format!("{prefix}.member.{i}.Value"))
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    fn destination(&self, prefix: &str) -> Destination {
        Destination {
            to_addresses: self.members(&format!("{prefix}.ToAddresses")),
            cc_addresses: self.members(&format!("{prefix}.CcAddresses")),
            bcc_addresses: self.members(&format!("{prefix}.BccAddresses")),
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn request_id() -> String {
    let mut r = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut r);
    r.iter().map(|b| format!("{b:02x}")).collect()
}

fn xml(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

/// An error as the query protocol answers it, with SES v1's code.
pub fn error(e: &ApiError) -> Response {
    let code = match e.kind {
        "BadRequestException" => "InvalidParameterValue",
        "NotFoundException" if e.message.starts_with("Template") => "TemplateDoesNotExist",
        "NotFoundException" => "ConfigurationSetDoesNotExist",
        "TooManyRequestsException" => "Throttling",
        "SendingPausedException" => "AccountSendingPausedException",
        other => other,
    };
    let (status, kind) = match e.status() {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::NOT_FOUND => {
            (StatusCode::BAD_REQUEST, "Sender")
        }
        s if s.is_server_error() => (s, "Receiver"),
        s => (s, "Sender"),
    };
    xml(
        status,
        format!(
            "<ErrorResponse xmlns=\"{NS}\"><Error><Type>{kind}</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            escape(&e.message),
            request_id()
        ),
    )
}

fn result(action: &str, inner: &str) -> Response {
    xml(
        StatusCode::OK,
        format!(
            "<{action}Response xmlns=\"{NS}\"><{action}Result>{inner}</{action}Result><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
            request_id()
        ),
    )
}

fn message_id(id: &str) -> String {
    format!("<MessageId>{}</MessageId>", escape(id))
}

/// A v1 bulk status name for an entry's error.
fn bulk_status(e: &ApiError) -> &'static str {
    match e.kind {
        "MessageRejected" => "MessageRejected",
        "TooManyRequestsException" if e.message.starts_with("Daily") => "AccountDailyQuotaExceeded",
        "TooManyRequestsException" => "AccountThrottled",
        "NotFoundException" if e.message.starts_with("Template") => "TemplateDoesNotExist",
        "NotFoundException" => "ConfigurationSetDoesNotExist",
        "BadRequestException" => "InvalidParameterValue",
        "ServiceUnavailable" => "TransientFailure",
        _ => "Failed",
    }
}

fn single(f: &Form, content: EmailContent, destination: Option<Destination>) -> SendEmailRequest {
    SendEmailRequest {
        from_email_address: f.string("Source"),
        destination,
        reply_to_addresses: f.members("ReplyToAddresses"),
        content,
        email_tags: f.tags("Tags"),
        configuration_set_name: f.string("ConfigurationSetName"),
        list_management_options: None,
    }
}

/// Runs one query API request (the body, or the query string, holds the
/// form).
pub async fn handle(ctx: &Ctx, p: &Principal, form: &Form) -> Response {
    if form.0.len() > MAX_FIELDS {
        return error(&ApiError::bad(format!(
            "the request has {} fields; at most {MAX_FIELDS}",
            form.0.len()
        )));
    }
    let action = form.get("Action").unwrap_or("");
    let outcome = match action {
        "SendEmail" => {
            let text = |k: &str| {
                form.string(k).map(|data| Text {
                    data,
                    charset: None,
                })
            };
            let simple = Simple {
                subject: text("Message.Subject.Data").unwrap_or(Text {
                    data: String::new(),
                    charset: None,
                }),
                body: Body {
                    text: text("Message.Body.Text.Data"),
                    html: text("Message.Body.Html.Data"),
                },
                headers: Vec::new(),
                attachments: Vec::new(),
            };
            let content = EmailContent {
                simple: Some(simple),
                ..EmailContent::default()
            };
            let req = single(form, content, Some(form.destination("Destination")));
            send::send_one(ctx, p, req).await.map(|id| message_id(&id))
        }
        "SendRawEmail" => {
            let content = EmailContent {
                raw: Some(RawMessage {
                    data: form.string("RawMessage.Data").unwrap_or_default(),
                }),
                ..EmailContent::default()
            };
            let to = form.members("Destinations");
            let dest = (!to.is_empty()).then(|| Destination {
                to_addresses: to,
                ..Destination::default()
            });
            send::send_one(ctx, p, single(form, content, dest))
                .await
                .map(|id| message_id(&id))
        }
        "SendTemplatedEmail" => {
            let content = EmailContent {
                template: Some(Template {
                    template_name: form.string("Template"),
                    template_arn: form.string("TemplateArn"),
                    template_data: form.string("TemplateData"),
                    ..Template::default()
                }),
                ..EmailContent::default()
            };
            let req = single(form, content, Some(form.destination("Destination")));
            send::send_one(ctx, p, req).await.map(|id| message_id(&id))
        }
        "SendBulkTemplatedEmail" => {
            let entries = form
                .indices("Destinations")
                .into_iter()
                .take(send::MAX_BULK_ENTRIES + 1)
                .map(|i| {
                    let at = format!("Destinations.member.{i}");
                    BulkEntry {
                        destination: form.destination(&format!("{at}.Destination")),
                        replacement_tags: form.tags(&format!("{at}.ReplacementTags")),
                        replacement_email_content: Some(ReplacementContent {
                            replacement_template: Some(ReplacementTemplate {
                                replacement_template_data: form
                                    .string(&format!("{at}.ReplacementTemplateData")),
                            }),
                        }),
                        replacement_headers: Vec::new(),
                    }
                })
                .collect();
            let req = SendBulkRequest {
                from_email_address: form.string("Source"),
                reply_to_addresses: form.members("ReplyToAddresses"),
                default_email_tags: form.tags("DefaultTags"),
                default_content: BulkContent {
                    template: Some(Template {
                        template_name: form.string("Template"),
                        template_arn: form.string("TemplateArn"),
                        template_data: form.string("DefaultTemplateData"),
                        ..Template::default()
                    }),
                },
                bulk_email_entries: entries,
                configuration_set_name: form.string("ConfigurationSetName"),
            };
            super::bulk::send_many(ctx, p, req).await.map(|results| {
                let members: String = results
                    .iter()
                    .map(|r| match r {
                        Ok(id) => format!(
                            "<member><Status>Success</Status>{}</member>",
                            message_id(id)
                        ),
                        Err(e) => format!(
                            "<member><Status>{}</Status><Error>{}</Error></member>",
                            bulk_status(e),
                            escape(&e.message)
                        ),
                    })
                    .collect();
                format!("<Status>{members}</Status>")
            })
        }
        "" => Err(ApiError::new("MissingAction", "the request has no Action")),
        other => Err(ApiError::new(
            "InvalidAction",
            format!("{other} is not an action of this API (the sending actions of 2010-12-01 are)"),
        )),
    };
    match outcome {
        Ok(inner) => result(action, &inner),
        Err(e) => error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_members_and_tags() {
        let f = Form::parse(
            b"Action=SendEmail&Destination.ToAddresses.member.2=b%40x.test&Destination.ToAddresses.member.1=a%40x.test&Message.Subject.Data=Hi+there&Tags.member.1.Name=k&Tags.member.1.Value=v",
        );
        assert_eq!(
            f.members("Destination.ToAddresses"),
            ["a@x.test", "b@x.test"]
        );
        assert_eq!(f.get("Message.Subject.Data"), Some("Hi there"));
        let t = f.tags("Tags");
        assert_eq!((t[0].name.as_str(), t[0].value.as_str()), ("k", "v"));
        assert!(f.indices("Destinations").is_empty());
        // a huge index is one entry, not billions
        let f = Form::parse(b"Tags.member.4294967295.Name=x&Tags.member.4294967295.Value=y");
        assert_eq!(f.tags("Tags").len(), 1);
    }
}
