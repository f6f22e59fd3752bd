//! One connection of the scripted server: greeting, EHLO, STARTTLS, the
//! transaction commands with their scripted replies and faults, QUIT.
//! Replies to pipelined commands are written together once the client's
//! bytes are consumed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{BrokenTls, Close, Options, RcptScript, Received, Shared, Stage, THROTTLE_REPLY};

/// What a connection's thread works with.
pub(super) struct Ctx<'a> {
    pub(super) opts: &'a Options,
    pub(super) script: &'a RcptScript,
    pub(super) shared: &'a Mutex<Shared>,
    /// This connection's number.
    pub(super) conn: usize,
    /// No longer counted as open (QUIT was received).
    pub(super) ended: std::cell::Cell<bool>,
}

impl Ctx<'_> {
    /// The session is over: no longer counted as open. Called on QUIT,
    /// before the reply, so that a client that reconnects as soon as it has
    /// the reply is not seen with two connections at once.
    pub(super) fn end(&self) {
        if !self.ended.replace(true) {
            self.shared.lock().expect("lock").open -= 1;
        }
    }

    /// Waits before replying at `stage` if a tarpit is set there; the
    /// replies already due (`out`) go out first.
    fn pause(&self, stage: Stage, w: &mut impl Write, out: &mut Vec<u8>) -> std::io::Result<()> {
        if let Some((s, d)) = self.opts.tarpit
            && s == stage
        {
            w.write_all(out)?;
            w.flush()?;
            out.clear();
            std::thread::sleep(d);
        }
        Ok(())
    }
}

pub(super) fn serve(conn: TcpStream, ctx: &Ctx<'_>) -> std::io::Result<()> {
    let opts = ctx.opts;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn);
    ctx.pause(Stage::Greeting, reader.get_mut(), &mut Vec::new())?;
    if (ctx.conn as u64) < u64::from(opts.greeting_421) {
        reader
            .get_mut()
            .write_all(b"421 4.3.2 scripted: service not available, try again later\r\n")?;
        return Ok(());
    }
    let peer = reader.get_ref().peer_addr().map(|a| a.ip()).ok();
    if let Some((n, reply)) = opts.refuse_greeting
        && (ctx.conn as u64) < u64::from(n)
    {
        write!(reader.get_mut(), "{reply}\r\n")?;
        return Ok(());
    }
    if let Some((from, reply)) = opts.refuse_from
        && peer == Some(from)
    {
        write!(reader.get_mut(), "{reply}\r\n")?;
        return Ok(());
    }
    reader.get_mut().write_all(b"220 scripted ESMTP\r\n")?;
    let offer_tls = opts.tls.is_some() || opts.broken_tls.is_some();
    let Some(mut tcp) = session(reader, offer_tls, false, ctx)? else {
        return Ok(());
    };
    match opts.broken_tls {
        Some(BrokenTls::Close) => return Ok(()),
        Some(how @ (BrokenTls::Garbage | BrokenTls::Silent)) => {
            // the client's hello first, so that the answer cannot arrive
            // together with the 220 (a client discards bytes read past it)
            tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut hello = [0u8; 512];
            let _ = tcp.read(&mut hello)?;
            if how == BrokenTls::Garbage {
                tcp.write_all(b"this is not a TLS handshake\r\n250 ok\r\n")?;
            }
            // wait (bounded) for the client to give up
            let _ = std::io::copy(&mut tcp, &mut std::io::sink());
            return Ok(());
        }
        None => {}
    }
    let Some(cfg) = &opts.tls else { return Ok(()) };
    let conn = rustls::ServerConnection::new(Arc::clone(cfg)).map_err(std::io::Error::other)?;
    let tls = rustls::StreamOwned::new(conn, tcp);
    // after STARTTLS the client starts over with EHLO
    session(BufReader::new(tls), false, true, ctx)?;
    Ok(())
}

/// Runs SMTP on `reader` until QUIT or EOF (None), or until STARTTLS is
/// accepted (Some(stream), for the caller to wrap in TLS).
fn session<S: Read + Write>(
    mut reader: BufReader<S>,
    offer_tls: bool,
    is_tls: bool,
    ctx: &Ctx<'_>,
) -> std::io::Result<Option<S>> {
    let (opts, shared) = (ctx.opts, ctx.shared);
    let mut out: Vec<u8> = Vec::new();
    let mut from: Option<String> = None;
    let mut accepted: Vec<String> = Vec::new();
    let mut line = String::new();
    // messages received on this connection
    let mut messages = 0u32;
    loop {
        if reader.buffer().is_empty() {
            if !out.is_empty() {
                reader.get_mut().write_all(&out)?;
                reader.get_mut().flush()?;
                out.clear();
            }
            let n = reader.fill_buf()?.len();
            if n == 0 {
                return Ok(None);
            }
            shared.lock().expect("lock").reads.push(n);
        }
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let cmd = line.trim_end().to_string();
        shared.lock().expect("lock").log.push(cmd.clone());
        let upper = cmd.to_ascii_uppercase();
        if let Some((n, how)) = opts.close_after
            && messages >= n
            && upper != "QUIT"
        {
            if how == Close::With421 {
                out.extend_from_slice(b"421 4.7.0 scripted: too many messages, closing\r\n");
                reader.get_mut().write_all(&out)?;
                reader.get_mut().flush()?;
            }
            return Ok(None);
        }
        let refused_ehlo = opts
            .refuse_ehlo
            .filter(|(n, _)| (ctx.conn as u64) < u64::from(*n));
        if let Some((_, reply)) = refused_ehlo
            && (upper.starts_with("EHLO") || upper.starts_with("HELO"))
        {
            write!(out, "{reply}\r\n")?;
        } else if upper.starts_with("EHLO") {
            if let Some(name) = cmd.split_whitespace().nth(1)
                && let Some(p) = ctx.shared.lock().expect("lock").peers.get_mut(ctx.conn)
            {
                p.1 = name.to_string();
            }
            ctx.pause(Stage::Ehlo, reader.get_mut(), &mut out)?;
            let p = if opts.pipelining {
                "250-PIPELINING\r\n"
            } else {
                ""
            };
            let t = if offer_tls { "250-STARTTLS\r\n" } else { "" };
            let size = match opts.size_limit {
                Some(n) if opts.advertise_size => format!("250-SIZE {n}\r\n"),
                _ => String::new(),
            };
            write!(
                out,
                "250-scripted\r\n{p}{t}{size}250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n"
            )?;
        } else if upper.starts_with("HELO") {
            ctx.pause(Stage::Ehlo, reader.get_mut(), &mut out)?;
            out.extend_from_slice(b"250 scripted\r\n");
        } else if upper == "STARTTLS" {
            if !offer_tls {
                out.extend_from_slice(b"503 5.5.1 TLS already active or not offered\r\n");
                continue;
            }
            out.extend_from_slice(b"220 2.0.0 Ready to start TLS\r\n");
            reader.get_mut().write_all(&out)?;
            reader.get_mut().flush()?;
            return Ok(Some(reader.into_inner()));
        } else if upper.starts_with("MAIL FROM:") {
            ctx.pause(Stage::Mail, reader.get_mut(), &mut out)?;
            from = Some(cmd[10..].to_string());
            accepted.clear();
            out.extend_from_slice(b"250 2.1.0 Ok\r\n");
        } else if upper.starts_with("RCPT TO:") {
            let addr = cmd[8..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string();
            let seen = {
                let mut s = shared.lock().expect("lock");
                let n = s.offered.entry(addr.clone()).or_insert(0);
                *n += 1;
                *n - 1
            };
            ctx.pause(Stage::Rcpt, reader.get_mut(), &mut out)?;
            let reply = if from.is_none() {
                "503 5.5.1 MAIL first".to_string()
            } else {
                let r = (ctx.script)(&addr, seen);
                if r.starts_with('2') && !shared.lock().expect("lock").admit_rcpt() {
                    THROTTLE_REPLY.to_string()
                } else {
                    r
                }
            };
            if reply.starts_with('2') {
                accepted.push(addr);
            }
            write!(out, "{reply}\r\n")?;
        } else if upper == "DATA" {
            ctx.pause(Stage::Data, reader.get_mut(), &mut out)?;
            if accepted.is_empty() {
                out.extend_from_slice(b"554 5.5.1 No valid recipients\r\n");
                continue;
            }
            out.extend_from_slice(b"354 go ahead\r\n");
            reader.get_mut().write_all(&out)?;
            reader.get_mut().flush()?;
            out.clear();
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if reader.by_ref().take(1 << 20).read_until(b'\n', &mut l)? == 0 {
                    return Ok(None);
                }
                if data.is_empty() {
                    let mut s = shared.lock().expect("lock");
                    if s.dropped < opts.drop_in_data {
                        // cut the message off after its first line
                        s.dropped += 1;
                        return Ok(None);
                    }
                }
                if l == b".\r\n" || l == b".\n" {
                    break;
                }
                let l = if l.starts_with(b"..") {
                    &l[1..]
                } else {
                    &l[..]
                };
                data.extend_from_slice(l);
            }
            if opts.discard_early && !reader.buffer().is_empty() {
                let n = reader.buffer().len();
                reader.consume(n);
                shared.lock().expect("lock").discarded += 1;
            }
            ctx.pause(Stage::DataEnd, reader.get_mut(), &mut out)?;
            from = None;
            if opts.size_limit.is_some_and(|n| data.len() > n) {
                accepted.clear();
                out.extend_from_slice(b"552 5.3.4 Message too big for system\r\n");
                continue;
            }
            messages += 1;
            shared.lock().expect("lock").received.push(Received {
                rcpts: std::mem::take(&mut accepted),
                data,
                tls: is_tls,
                conn: ctx.conn,
                at: Instant::now(),
            });
            out.extend_from_slice(b"250 2.0.0 Ok: queued\r\n");
        } else if upper == "RSET" {
            from = None;
            accepted.clear();
            out.extend_from_slice(b"250 2.0.0 Ok\r\n");
        } else if upper == "NOOP" {
            out.extend_from_slice(b"250 2.0.0 Ok\r\n");
        } else if upper == "QUIT" {
            ctx.end();
            out.extend_from_slice(b"221 2.0.0 Bye\r\n");
            reader.get_mut().write_all(&out)?;
            reader.get_mut().flush()?;
            return Ok(None);
        } else {
            out.extend_from_slice(b"502 5.5.2 Not implemented\r\n");
        }
    }
}
