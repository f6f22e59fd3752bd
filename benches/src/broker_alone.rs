//! RabbitMQ's own CPU per message, with no Volley running: `n` persistent
//! messages of `size` bytes published on one channel in confirm mode,
//! `batch` at a time (each batch's confirms awaited, as the `amqp`
//! destination publishes), to a durable exchange routing them to one
//! durable queue. What the broker costs per event sets a floor under the
//! `amqp` destination's cost when the broker shares the machine.

use std::time::Instant;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// What one probe measured.
pub struct BrokerAlone {
    /// Messages confirmed per second.
    pub rate: f64,
    /// The broker's CPU (user + system) per message, µs.
    pub cpu_us: f64,
}

/// Publishes to `exchange` with `routing_key` at `url`; `cpu` reads the
/// broker's CPU seconds so far.
pub fn probe(
    url: &str,
    exchange: &str,
    routing_key: &str,
    (n, batch, size): (usize, usize, usize),
    cpu: impl Fn() -> f64,
) -> BrokerAlone {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let props = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        let conn = Connection::connect(url, props).await.expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
        let body = vec![b'x'; size];
        let cpu0 = cpu();
        let start = Instant::now();
        let mut sent = 0;
        while sent < n {
            let k = batch.min(n - sent);
            let mut confirms = Vec::with_capacity(k);
            for i in 0..k {
                let p = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(format!("probe-{}", sent + i).into());
                let opts = BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                };
                let c = ch
                    .basic_publish(exchange, routing_key, opts, &body, p)
                    .await
                    .expect("publish");
                confirms.push(c);
            }
            for c in confirms {
                c.await.expect("confirm");
            }
            sent += k;
        }
        let secs = start.elapsed().as_secs_f64();
        let used = cpu() - cpu0;
        let _ = conn.close(200, "done").await;
        BrokerAlone {
            rate: n as f64 / secs,
            cpu_us: used * 1e6 / n as f64,
        }
    })
}
