//! The `amqp` destination: each event a persistent message (delivery mode
//! 2) on an exchange of an AMQP 0-9-1 broker (RabbitMQ), with publisher
//! confirms: an event counts as published only when the broker confirmed
//! it. This is the SQS role: consumers get durable queues, acks and
//! dead-lettering from the broker. Bodies in the `sns` format (the signed
//! SNS notification, as SNS delivers to SQS) or `raw` (the SES event JSON).
//! The message id is the event's stable id; the routing key is the
//! configured template with `{event_type}` and `{configuration_set}`
//! filled in.
//!
//! A batch is published with `mandatory` and its confirms awaited (within
//! `timeout`); confirmed events are remembered while the pump retries the
//! rest with backoff (broker down, connection lost, nack). An event the
//! broker returns as unroutable (no queue bound for its routing key) goes
//! to the dead-letter file, as a webhook's refused events do. A lost
//! connection is opened again at the next try. Exposure: the broker's
//! frames (parsed by lapin).

use std::collections::HashSet;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use super::id::EventKey;
use super::json::Lines;
use super::model::{Event, timestamp};
use super::sink::{NotificationSink, SinkError};
use super::sns::Topic;
use super::webhook::SinkEnv;
use super::webhook::dead_letter::{DeadLetter, Refused};
use crate::config::destinations::{AmqpDestination, EventFormat, ExchangeType};
use crate::metrics::DestinationMetrics;

/// One message ready to go.
struct Outgoing {
    key: EventKey,
    id: String,
    event: Vec<u8>,
    body: Vec<u8>,
    routing_key: String,
    event_type: &'static str,
}

/// What became of one message.
enum Fate {
    Confirmed,
    Unroutable(String),
    Retry(String),
}

/// Publishes events to one broker exchange.
pub struct AmqpSink {
    name: String,
    set: String,
    c: AmqpDestination,
    topic: Topic,
    env: SinkEnv,
    link: Option<(Connection, Channel)>,
    done: HashSet<EventKey>,
    dead: DeadLetter,
    counts: DestinationMetrics,
    lines: Lines,
}

/// The routing key of an event: `template` with `{event_type}` (without
/// spaces) and `{configuration_set}` filled in.
pub fn routing_key(template: &str, event_type: &str, set: &str) -> String {
    template
        .replace("{event_type}", &event_type.replace(' ', ""))
        .replace("{configuration_set}", set)
}

impl AmqpSink {
    pub fn open(
        set: &str,
        destination: &str,
        c: &AmqpDestination,
        env: &SinkEnv,
        counts: &DestinationMetrics,
    ) -> Result<AmqpSink, String> {
        if c.format == EventFormat::Sns && env.sns.is_none() {
            return Err("the sns format needs the SNS signing key (not loaded)".into());
        }
        let topic_arn = c
            .topic_arn
            .clone()
            .unwrap_or_else(|| format!("arn:aws:sns:{}:{}:{set}", env.region, env.account_id));
        let name = super::fanout::cursor_name(set, destination);
        let dead_letter = c
            .dead_letter
            .clone()
            .unwrap_or_else(|| format!("dead-letter/{set}.{destination}.jsonl").into());
        Ok(AmqpSink {
            topic: Topic {
                subscription_arn: format!("{topic_arn}:{destination}"),
                topic_arn,
                public_url: env.public_url.clone(),
            },
            dead: DeadLetter::new(&dead_letter, &format!("{set}.{destination}")),
            set: set.to_string(),
            c: c.clone(),
            env: env.clone(),
            link: None,
            done: HashSet::new(),
            counts: counts.clone(),
            lines: Lines::default(),
            name,
        })
    }

    fn err(&self, message: String) -> SinkError {
        SinkError {
            sink: self.name.clone(),
            message,
        }
    }

    /// The messages of the events not done yet.
    fn outgoing(&mut self, events: &[Event]) -> Vec<Outgoing> {
        let now = timestamp(volley_spool::now_ms());
        let mut out = Vec::new();
        let mut line = Vec::with_capacity(2048);
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
            let body = match (&self.c.format, &self.env.sns) {
                (EventFormat::Sns, Some(sns)) => {
                    super::sns::notification_body(&self.topic, &id, &line, &now, &sns.signer)
                }
                _ => line.clone(),
            };
            out.push(Outgoing {
                key: e.key,
                id,
                event: line.clone(),
                body,
                routing_key: routing_key(&self.c.routing_key, e.event_type, &self.set),
                event_type: e.event_type,
            });
        }
        out
    }
}

/// Connects, opens a channel in confirm mode and declares the exchange.
async fn connect(c: &AmqpDestination) -> Result<(Connection, Channel), String> {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current())
        .with_connection_name("volley".into());
    let conn = Connection::connect(&c.url, props)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| format!("channel: {e}"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("confirm.select: {e}"))?;
    let kind = match c.exchange_type {
        ExchangeType::Topic => ExchangeKind::Topic,
        ExchangeType::Direct => ExchangeKind::Direct,
        ExchangeType::Fanout => ExchangeKind::Fanout,
        ExchangeType::Headers => ExchangeKind::Headers,
    };
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(&c.exchange, kind, durable, FieldTable::default())
        .await
        .map_err(|e| format!("exchange.declare {:?}: {e}", c.exchange))?;
    Ok((conn, channel))
}

/// Publishes `msgs` on `channel` and awaits their confirms.
async fn publish(
    channel: &Channel,
    c: &AmqpDestination,
    format: EventFormat,
    msgs: &[Outgoing],
) -> Result<Vec<Fate>, String> {
    let content_type = match format {
        EventFormat::Sns => "text/plain; charset=UTF-8",
        EventFormat::Raw => "application/json",
    };
    let now_secs = volley_spool::now_ms() / 1000;
    // every message's frames are queued before any is awaited (in order),
    // so the connection's I/O loop writes them in few writes instead of
    // one hand-over per message
    let publishes = msgs.iter().map(|m| {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(content_type.into())
            .with_message_id(m.id.clone().into())
            .with_type(m.event_type.into())
            .with_app_id("volley".into())
            .with_timestamp(now_secs);
        let opts = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        channel.basic_publish(&c.exchange, &m.routing_key, opts, &m.body, props)
    });
    let mut pending = Vec::with_capacity(msgs.len());
    for sent in all_in_order(publishes.collect()).await {
        pending.push(sent.map_err(|e| format!("basic.publish: {e}"))?);
    }
    let mut fates = Vec::with_capacity(pending.len());
    for (confirm, m) in pending.into_iter().zip(msgs) {
        fates.push(match confirm.await {
            Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Fate::Confirmed,
            Ok(Confirmation::Ack(Some(_))) => Fate::Unroutable(format!(
                "unroutable: no queue bound to exchange {:?} for routing key {:?}",
                c.exchange, m.routing_key
            )),
            Ok(Confirmation::Nack(_)) => Fate::Retry("the broker nacked it".into()),
            Err(e) => Fate::Retry(format!("confirm: {e}")),
        });
    }
    Ok(fates)
}

/// Runs `futs` together: polls each once in the order given (so what
/// they do at their first poll happens in that order, before any waits),
/// then awaits the rest one by one; their outputs in that order.
async fn all_in_order<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    let mut first = true;
    std::future::poll_fn(|cx| {
        if first {
            first = false;
            for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
                if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                    *o = Some(v);
                }
            }
        }
        std::task::Poll::Ready(())
    })
    .await;
    let mut done = Vec::with_capacity(futs.len());
    for (f, o) in futs.into_iter().zip(out) {
        done.push(match o {
            Some(v) => v,
            None => f.await,
        });
    }
    done
}

impl NotificationSink for AmqpSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn publish(&mut self, events: &[Event]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        let msgs = self.outgoing(events);
        let (c, format, timeout) = (&self.c, self.c.format, self.c.timeout);
        let mut link = self.link.take();
        let attempt = self.env.runtime.block_on(async {
            let run = async {
                if link
                    .as_ref()
                    .is_none_or(|(conn, ch)| !conn.status().connected() || !ch.status().connected())
                {
                    link = Some(connect(c).await?);
                }
                let Some((_, channel)) = link.as_ref() else {
                    return Err("no connection".to_string());
                };
                publish(channel, c, format, &msgs).await
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(r) => r,
                Err(_) => Err(format!("no confirmation within {timeout:?}")),
            }
        });
        let fates = match attempt {
            Ok(f) => {
                self.link = link;
                f
            }
            Err(e) => {
                // drop the connection: the next try opens a new one
                if let Some((conn, _)) = link {
                    let _ = self.env.runtime.block_on(async move {
                        let closing = conn.close(320, "volley reconnecting");
                        tokio::time::timeout(Duration::from_secs(1), closing).await
                    });
                }
                return Err(self.err(e));
            }
        };
        let mut unroutable = Vec::new();
        let mut retry: Option<String> = None;
        for (m, fate) in msgs.iter().zip(fates) {
            match fate {
                Fate::Confirmed => {
                    self.done.insert(m.key);
                }
                Fate::Unroutable(why) => unroutable.push((m, why)),
                Fate::Retry(why) => {
                    retry.get_or_insert(why);
                }
            }
        }
        let lines: Vec<Refused<'_>> = unroutable
            .iter()
            .map(|(m, why)| Refused {
                key: m.key,
                message_id: &m.id,
                reason: why,
                event: &m.event,
            })
            .collect();
        self.dead
            .settle(&lines, &self.counts, &mut self.done)
            .map_err(|e| SinkError {
                sink: self.name.clone(),
                message: e,
            })?;
        if let Some(why) = retry {
            return Err(self.err(format!("not all events confirmed ({why}); retrying")));
        }
        self.done.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_in_order_polls_first_in_order_then_waits() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        let futs: Vec<_> = (0..5u64)
            .map(|i| {
                let seen = &seen;
                async move {
                    seen.lock().unwrap().push(i);
                    // later ones finish first
                    tokio::time::sleep(std::time::Duration::from_millis(10 * (5 - i))).await;
                    i * 10
                }
            })
            .collect();
        let out = rt.block_on(all_in_order(futs));
        assert_eq!(out, vec![0, 10, 20, 30, 40]);
        assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn routing_keys_fill_in_type_and_set() {
        let t = "{configuration_set}.{event_type}";
        assert_eq!(routing_key(t, "Bounce", "main"), "main.Bounce");
        assert_eq!(
            routing_key(t, "Rendering Failure", "main"),
            "main.RenderingFailure"
        );
        assert_eq!(routing_key("fixed", "Send", "x"), "fixed");
    }
}
