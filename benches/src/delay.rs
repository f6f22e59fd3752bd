//! A TCP proxy that delays every chunk by a fixed one-way latency in both
//! directions (a stand-in for a remote site's round trip on loopback), and a
//! probe of an SMTP server's NOOP round trip.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// Accepts on `listener` and forwards each connection to `upstream`, each
/// direction through its own FIFO delay line of `one_way`.
pub async fn delay_proxy(listener: TcpListener, upstream: SocketAddr, one_way: Duration) {
    loop {
        let Ok((down, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let Ok(up) = TcpStream::connect(upstream).await else {
                return; // the client sees EOF
            };
            let _ = (down.set_nodelay(true), up.set_nodelay(true));
            let (down_r, down_w) = down.into_split();
            let (up_r, up_w) = up.into_split();
            tokio::spawn(delay_line(down_r, up_w, one_way));
            tokio::spawn(delay_line(up_r, down_w, one_way));
        });
    }
}

/// Reads chunks as they arrive, stamps them with `now + delay`, and writes
/// each at its time, in order (the link's bandwidth is unlimited; a slow
/// receiver holds back what follows, as a real one would). tokio's timer
/// rounds up to whole milliseconds, so it only sleeps to within 1 ms of the
/// due time; the rest is slept precisely on the blocking pool.
async fn delay_line(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            let coarse = due.checked_sub(Duration::from_millis(1)).unwrap_or(due);
            tokio::time::sleep_until(coarse.into()).await;
            let rest = due.saturating_duration_since(Instant::now());
            if !rest.is_zero() {
                let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
            }
            if chunk.is_empty() || to.write_all(&chunk).await.is_err() {
                break; // EOF (or the receiver is gone)
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        if tx
            .send((Instant::now() + delay, buf[..n].to_vec()))
            .is_err()
            || n == 0
        {
            break;
        }
    }
    let _ = writer.await;
}

/// Median time of an SMTP NOOP round trip to `addr` (blocking client).
pub fn probe_rtt(addr: SocketAddr) -> Duration {
    let s = std::net::TcpStream::connect(addr).expect("probe connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).expect("greeting");
    assert!(line.starts_with("220"), "greeting: {line}");
    let mut times: Vec<Duration> = (0..21)
        .map(|_| {
            let t0 = Instant::now();
            w.write_all(b"NOOP\r\n").expect("NOOP");
            line.clear();
            r.read_line(&mut line).expect("NOOP reply");
            assert!(line.starts_with("250"), "NOOP reply: {line}");
            t0.elapsed()
        })
        .collect();
    let _ = w.write_all(b"QUIT\r\n");
    times.sort();
    times[times.len() / 2]
}
