//! The `webhook` destination: each event POSTed on its own (at most
//! `concurrency` at once, each on a kept-alive connection, every request
//! within `timeout`), in one of two formats: `sns`, the SNS HTTP/S
//! notification (signed; after the endpoint confirmed the subscription,
//! see [`super::sns`]), or `raw`, the SES event JSON alone (SNS raw message
//! delivery). Both carry SNS's `x-amz-sns-*` headers; the message id is the
//! event's stable id, so an event published twice has the same id.
//!
//! Requests run on the sink's own single-threaded runtime, on the pump's
//! thread (connections are driven while a batch is published; one closed
//! in between is noticed and opened again at the next request).
//!
//! A batch is taken when every event is: those the endpoint took are
//! remembered while the pump retries the others (connection refused,
//! timeout, 5xx, 408, 429) with backoff; those it refused for good (any
//! other status) go to the dead-letter file first. Exposure: the
//! endpoint's answers (see [`conn`]).

mod conn;
pub(super) mod dead_letter;

pub use super::env::{SinkEnv, SnsState};

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue};
use bytes::Bytes;

use self::conn::{Answer, Conn, Endpoint};
use self::dead_letter::{DeadLetter, Refused};
use super::id::EventKey;
use super::json::Lines;
use super::model::{Event, timestamp};
use super::sink::{NotificationSink, SinkError};
use super::sns::{Message, Topic};
use crate::config::destinations::{EventFormat, WebhookDestination};
use crate::metrics::DestinationMetrics;

/// The header carrying the event's id.
static MESSAGE_ID: HeaderName = HeaderName::from_static("x-amz-sns-message-id");

/// How often a pending subscription's confirmation request is sent again.
const CONFIRM_AGAIN: Duration = Duration::from_secs(20);

/// One request ready to go.
struct Request {
    key: EventKey,
    id: String,
    event: Vec<u8>,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// Posts events to one endpoint.
pub struct WebhookSink {
    name: String,
    url: String,
    endpoint: Arc<Endpoint>,
    format: EventFormat,
    extra: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    conns: Vec<Option<Conn>>,
    topic: Topic,
    env: SinkEnv,
    /// The sink's own single-threaded runtime: its requests and their
    /// connections run on the pump's thread while it publishes, with no
    /// hand-over to other threads per request.
    /// (Always present; taken only when the sink is dropped.)
    rt: Option<tokio::runtime::Runtime>,
    /// Events of the batch being published that are done (taken or
    /// dead-lettered).
    done: HashSet<EventKey>,
    dead: DeadLetter,
    counts: DestinationMetrics,
    lines: Lines,
    /// When the last confirmation request went out.
    asked: Option<Instant>,
}

fn header(name: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    Some((
        HeaderName::try_from(name).ok()?,
        HeaderValue::try_from(value).ok()?,
    ))
}

impl WebhookSink {
    pub fn open(
        set: &str,
        destination: &str,
        c: &WebhookDestination,
        env: &SinkEnv,
        counts: &DestinationMetrics,
    ) -> Result<WebhookSink, String> {
        let endpoint = Endpoint::parse(&c.url)?;
        if c.format == EventFormat::Sns && env.sns.is_none() {
            return Err("the sns format needs the SNS signing key (not loaded)".into());
        }
        let topic_arn = c
            .topic_arn
            .clone()
            .unwrap_or_else(|| format!("arn:aws:sns:{}:{}:{set}", env.region, env.account_id));
        let name = super::fanout::cursor_name(set, destination);
        let subscription_arn = match &env.sns {
            Some(s) if c.format == EventFormat::Sns => {
                s.subscriptions
                    .ensure(&name, &c.url, &topic_arn)
                    .map_err(|e| e.to_string())?
                    .subscription_arn
            }
            _ => format!("{topic_arn}:{destination}"),
        };
        let extra = c.headers.iter().filter_map(|(k, v)| header(k, v)).collect();
        let dead_letter = c
            .dead_letter
            .clone()
            .unwrap_or_else(|| format!("dead-letter/{set}.{destination}.jsonl").into());
        Ok(WebhookSink {
            url: c.url.clone(),
            endpoint: Arc::new(endpoint),
            format: c.format,
            extra,
            timeout: c.timeout,
            conns: (0..c.concurrency).map(|_| None).collect(),
            topic: Topic {
                topic_arn,
                subscription_arn,
                public_url: env.public_url.clone(),
            },
            env: env.clone(),
            rt: Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot make the webhook's runtime: {e}"))?,
            ),
            done: HashSet::new(),
            dead: DeadLetter::new(&dead_letter, &format!("{set}.{destination}")),
            counts: counts.clone(),
            lines: Lines::default(),
            asked: None,
            name,
        })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.rt
            .as_ref()
            .expect("the runtime lives as long as the sink")
    }

    fn err(&self, message: String) -> SinkError {
        SinkError {
            sink: self.name.clone(),
            message,
        }
    }

    /// The headers every request of this sink carries.
    fn headers(&self, kind: &str, id: &str) -> Vec<(HeaderName, HeaderValue)> {
        let t = &self.topic;
        let mut h: Vec<_> = [
            ("content-type", "text/plain; charset=UTF-8"),
            ("user-agent", "Amazon Simple Notification Service Agent"),
            ("x-amz-sns-message-type", kind),
            ("x-amz-sns-message-id", id),
            ("x-amz-sns-topic-arn", &t.topic_arn),
            ("x-amz-sns-subscription-arn", &t.subscription_arn),
        ]
        .into_iter()
        .filter_map(|(k, v)| header(k, v))
        .collect();
        if self.format == EventFormat::Raw {
            h.extend(header("x-amz-sns-rawdelivery", "true"));
        }
        h.extend(self.extra.iter().cloned());
        h
    }

    /// For `sns`: Ok once the endpoint confirmed its subscription; until
    /// then asks it to (again every [`CONFIRM_AGAIN`]) and refuses.
    fn confirmed(&mut self) -> Result<(), SinkError> {
        let Some(sns) = self
            .env
            .sns
            .clone()
            .filter(|_| self.format == EventFormat::Sns)
        else {
            return Ok(());
        };
        let sub = sns
            .subscriptions
            .ensure(&self.name, &self.url, &self.topic.topic_arn)
            .map_err(|e| self.err(e.to_string()))?;
        if sub.confirmed {
            return Ok(());
        }
        self.topic.subscription_arn = sub.subscription_arn.clone();
        if self.asked.is_some_and(|t| t.elapsed() < CONFIRM_AGAIN) {
            return Err(self.err("waiting for the endpoint to confirm the subscription".into()));
        }
        let id = super::sns::subscriptions::uuid_like();
        let m = Message::confirmation(
            &self.topic,
            id.clone(),
            &sub.token,
            timestamp(volley_spool::now_ms()),
            &sns.signer,
        );
        let body = Bytes::from(serde_json::to_vec(&m).unwrap_or_default());
        let headers = self.headers("SubscriptionConfirmation", &id);
        let (endpoint, timeout) = (Arc::clone(&self.endpoint), self.timeout);
        let mut conn = self.conns[0].take();
        let answer = self.runtime().block_on(async move {
            let a = conn::post(&mut conn, &endpoint, &headers, body, timeout).await;
            (a, conn)
        });
        self.conns[0] = answer.1;
        match answer.0 {
            Answer::Taken => {
                self.asked = Some(Instant::now());
                tracing::info!(destination = %self.name, url = %self.url, "asked the endpoint to confirm its SNS subscription");
                // it may have confirmed while answering
                if sns.subscriptions.confirmed(&self.name) {
                    return Ok(());
                }
                Err(self.err("waiting for the endpoint to confirm the subscription".into()))
            }
            Answer::Retry(why) | Answer::Refused(why) => Err(self.err(format!(
                "the subscription confirmation request failed: {why}"
            ))),
        }
    }

    /// The requests of the events not done yet.
    fn requests(&mut self, events: &[Event]) -> Vec<Request> {
        let now = timestamp(volley_spool::now_ms());
        let mut out = Vec::new();
        let mut line = Vec::with_capacity(2048);
        // the headers all requests share, made once per batch
        let base: Vec<_> = self
            .headers("Notification", "")
            .into_iter()
            .filter(|(k, _)| k != MESSAGE_ID)
            .collect();
        for e in events {
            if self.done.contains(&e.key) {
                continue;
            }
            line.clear();
            if self.lines.write(e, &mut line).is_err() {
                continue;
            }
            line.pop(); // the newline
            let id = e.key.id(self.env.spool_uid);
            let body = match (&self.format, &self.env.sns) {
                (EventFormat::Sns, Some(sns)) => Bytes::from(super::sns::notification_body(
                    &self.topic,
                    &id,
                    &line,
                    &now,
                    &sns.signer,
                )),
                _ => Bytes::from(line.clone()),
            };
            let mut headers = base.clone();
            if let Ok(v) = HeaderValue::try_from(id.as_str()) {
                headers.push((MESSAGE_ID.clone(), v));
            }
            out.push(Request {
                key: e.key,
                headers,
                id,
                event: line.clone(),
                body,
            });
        }
        out
    }

    /// Sends `reqs`, at most one per connection at once; the answers in
    /// the order of `reqs`.
    fn send(&mut self, reqs: Arc<Vec<Request>>) -> Vec<Answer> {
        let next = Arc::new(AtomicUsize::new(0));
        let workers = self.conns.len().min(reqs.len());
        let timeout = self.timeout;
        let conns: Vec<Option<Conn>> = self
            .conns
            .iter_mut()
            .take(workers)
            .map(Option::take)
            .collect();
        let endpoint = Arc::clone(&self.endpoint);
        let results = self.runtime().block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for mut conn in conns {
                let (reqs, next, endpoint) =
                    (Arc::clone(&reqs), Arc::clone(&next), Arc::clone(&endpoint));
                set.spawn(async move {
                    let mut answers = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(r) = reqs.get(i) else {
                            break;
                        };
                        let a =
                            conn::post(&mut conn, &endpoint, &r.headers, r.body.clone(), timeout)
                                .await;
                        answers.push((i, a));
                    }
                    (conn, answers)
                });
            }
            set.join_all().await
        });
        let mut answers: Vec<Option<Answer>> = Vec::new();
        let mut conns = Vec::new();
        for (conn, got) in results {
            conns.push(conn);
            for (i, a) in got {
                if answers.len() <= i {
                    answers.resize(i + 1, None);
                }
                answers[i] = Some(a);
            }
        }
        for (slot, conn) in self.conns.iter_mut().zip(conns) {
            *slot = conn;
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Answer::Retry("not sent".into())))
            .collect()
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        // without waiting: a sink may be dropped in async code (a start
        // that failed on a later destination)
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl NotificationSink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn publish(&mut self, events: &[Event]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        self.confirmed()?;
        let reqs = Arc::new(self.requests(events));
        let answers = self.send(Arc::clone(&reqs));
        let mut refused = Vec::new();
        let mut retry: Option<&str> = None;
        let mut retries = 0usize;
        for (r, a) in reqs.iter().zip(&answers) {
            match a {
                Answer::Taken => {
                    self.done.insert(r.key);
                }
                Answer::Refused(why) => refused.push((r, why.as_str())),
                Answer::Retry(why) => {
                    retries += 1;
                    retry.get_or_insert(why);
                }
            }
        }
        let lines: Vec<Refused<'_>> = refused
            .iter()
            .map(|(r, why)| Refused {
                key: r.key,
                message_id: &r.id,
                reason: why,
                event: &r.event,
            })
            .collect();
        self.dead
            .settle(&lines, &self.counts, &mut self.done)
            .map_err(|e| SinkError {
                sink: self.name.clone(),
                message: e,
            })?;
        if let Some(why) = retry {
            return Err(self.err(format!(
                "{retries} of {} events not taken ({why}); retrying",
                reqs.len()
            )));
        }
        self.done.clear();
        Ok(())
    }
}
