//! `volley sendmail` (also when the binary is called as `sendmail`, e.g.
//! installed as `/usr/sbin/sendmail`): the sendmail interface that
//! applications and cron use, writing into the drop directory.
//!
//! Options as sendmail's: `-t` (recipients from To, Cc, Bcc, plus any
//! given), `-i` / `-oi` (a lone `.` line does not end the message), `-f
//! ADDR` / `-r ADDR` (envelope sender), `-F NAME` (the From name when a
//! From is added), other `-o...`, `-B`, `-v`, `-bm` accepted and ignored;
//! `--config PATH` (else `$VOLLEY_CONFIG`, else `config.toml` here, else
//! `/etc/volley/config.toml`). Exit codes as sendmail's (sysexits.h): 0
//! queued, 64 usage, 65 bad data (no recipients, bad address, too large,
//! no sender), 69 config unusable, 73 cannot create the file, 74 I/O error.
//!
//! The message goes to `pickup/tmp/` with `X-Envelope-From` /
//! `X-Envelope-To` headers, is synced, then renamed into `pickup/new/`
//! (the directory synced): once this exits 0 the message is durable and
//! `volley run` takes it (now, or when it next starts).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use volley_engine::config::Config;
use volley_engine::submission::pickup::{envelope, prepare_dirs};

const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_UNAVAILABLE: u8 = 69;
const EX_CANTCREAT: u8 = 73;
const EX_IOERR: u8 = 74;

#[derive(Debug, Default, PartialEq)]
struct Args {
    extract: bool,
    ignore_dots: bool,
    from: Option<String>,
    full_name: Option<String>,
    config: Option<PathBuf>,
    rcpts: Vec<String>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut i = 0;
    let value = |i: &mut usize, attached: &str, flag: &str| -> Result<String, String> {
        if !attached.is_empty() {
            return Ok(attached.to_string());
        }
        *i += 1;
        args.get(*i)
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value"))
    };
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            a.rcpts.extend(args[i + 1..].iter().cloned());
            break;
        }
        if arg == "--config" {
            a.config = Some(PathBuf::from(value(&mut i, "", "--config")?));
        } else if let Some(rest) = arg.strip_prefix("-f") {
            a.from = Some(value(&mut i, rest, "-f")?);
        } else if let Some(rest) = arg.strip_prefix("-r") {
            a.from = Some(value(&mut i, rest, "-r")?);
        } else if let Some(rest) = arg.strip_prefix("-F") {
            a.full_name = Some(value(&mut i, rest, "-F")?);
        } else if arg == "-t" {
            a.extract = true;
        } else if arg == "-i" || arg == "-oi" {
            a.ignore_dots = true;
        } else if arg == "-B"
            || arg == "-N"
            || arg == "-R"
            || arg == "-V"
            || arg == "-X"
            || arg == "-O"
        {
            i += 1; // takes a value, ignored
        } else if arg.starts_with("-o")
            || arg.starts_with("-B")
            || arg == "-v"
            || arg == "-bm"
            || arg.starts_with("-N")
        {
            // delivery modes, body type, verbosity: nothing to do here
        } else if arg.starts_with("-b") {
            return Err(format!("mode {arg} is not supported (only -bm, sending)"));
        } else if arg.starts_with('-') && arg.len() > 1 {
            return Err(format!("unknown option {arg}"));
        } else {
            a.rcpts.extend(
                arg.split(',')
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty()),
            );
        }
        i += 1;
    }
    Ok(a)
}

fn config_path(a: &Args) -> PathBuf {
    if let Some(p) = &a.config {
        return p.clone();
    }
    if let Ok(p) = std::env::var("VOLLEY_CONFIG") {
        return PathBuf::from(p);
    }
    let here = PathBuf::from("config.toml");
    if here.is_file() {
        return here;
    }
    PathBuf::from("/etc/volley/config.toml")
}

/// Reads the message: to the end, or (without `-i`) to a lone `.` line.
fn read_message(ignore_dots: bool, max: u64) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    std::io::stdin()
        .lock()
        .take(max + 1)
        .read_to_end(&mut raw)?;
    if !ignore_dots {
        let mut pos = 0;
        for line in raw.split_inclusive(|&b| b == b'\n') {
            if line == b".\n" || line == b".\r\n" || line == b"." {
                raw.truncate(pos);
                break;
            }
            pos += line.len();
        }
    }
    Ok(raw)
}

fn fail(code: u8, msg: impl std::fmt::Display) -> u8 {
    eprintln!("sendmail: {msg}");
    code
}

/// Runs sendmail with its arguments (without the program name).
pub fn main(args: &[String]) -> u8 {
    let a = match parse(args) {
        Ok(a) => a,
        Err(e) => return fail(EX_USAGE, e),
    };
    let path = config_path(&a);
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => return fail(EX_UNAVAILABLE, e),
    };
    let max = config.submission.max_message_size;
    let raw = match read_message(a.ignore_dots, max) {
        Ok(r) => r,
        Err(e) => return fail(EX_IOERR, format!("reading the message: {e}")),
    };
    if raw.len() as u64 > max {
        return fail(EX_DATAERR, format!("message larger than {max} bytes"));
    }
    let mut rcpts = a.rcpts.clone();
    if a.extract
        && let Ok(env) = envelope::of(&raw)
    {
        rcpts.extend(env.rcpts);
    }
    if rcpts.is_empty() {
        return fail(EX_USAGE, "no recipients (give them as arguments, or -t)");
    }
    for r in &rcpts {
        if let Err(e) = volley_engine::address::parse(r) {
            return fail(EX_DATAERR, format!("recipient {r:?}: {e}"));
        }
    }
    let has_from = envelope::has_from(&raw);
    let from = match (&a.from, has_from) {
        (Some(f), _) => {
            if !f.is_empty()
                && f != "<>"
                && let Err(e) = volley_engine::address::parse(f.trim_matches(['<', '>']))
            {
                return fail(EX_DATAERR, format!("sender {f:?}: {e}"));
            }
            Some(f.trim_matches(['<', '>']).to_string())
        }
        (None, true) => None,
        (None, false) => {
            return fail(EX_DATAERR, "no sender: give -f ADDRESS or a From header");
        }
    };
    let mut head = String::new();
    if let Some(f) = &from {
        head.push_str(&format!("X-Envelope-From: <{f}>\r\n"));
        if !has_from && !f.is_empty() {
            match &a.full_name {
                Some(n) => head.push_str(&format!(
                    "From: \"{}\" <{f}>\r\n",
                    n.replace(['"', '\r', '\n'], "")
                )),
                None => head.push_str(&format!("From: <{f}>\r\n")),
            }
        }
    }
    for r in &rcpts {
        head.push_str(&format!("X-Envelope-To: <{r}>\r\n"));
    }
    let dir = config
        .submission
        .pickup
        .clone()
        .unwrap_or_else(|| config.spool.dir.join("pickup"));
    match drop_file(&dir, head.as_bytes(), &raw) {
        Ok(()) => 0,
        Err((code, e)) => fail(code, e),
    }
}

/// Writes the file into `tmp/`, syncs it, renames it into `new/` and
/// syncs that directory.
fn drop_file(dir: &Path, head: &[u8], body: &[u8]) -> Result<(), (u8, String)> {
    use std::os::unix::fs::OpenOptionsExt;
    prepare_dirs(dir).map_err(|e| (EX_CANTCREAT, format!("{}: {e}", dir.display())))?;
    let mut r = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut r);
    let name = format!(
        "{}.{}_{}.sendmail",
        volley_spool::now_ms(),
        std::process::id(),
        r.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let tmp = dir.join("tmp").join(&name);
    let new = dir.join("new").join(&name);
    fn err(code: u8, p: &Path) -> impl Fn(std::io::Error) -> (u8, String) + '_ {
        move |e| (code, format!("{}: {e}", p.display()))
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&tmp)
        .map_err(err(EX_CANTCREAT, &tmp))?;
    let written = f
        .write_all(head)
        .and_then(|()| f.write_all(body))
        .and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(EX_IOERR, &tmp)(e));
    }
    std::fs::rename(&tmp, &new).map_err(err(EX_CANTCREAT, &new))?;
    std::fs::File::open(dir.join("new"))
        .and_then(|d| d.sync_all())
        .map_err(err(EX_IOERR, &dir.join("new")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_as_sendmail_takes_them() {
        let a = parse(&s(&[
            "-t",
            "-oi",
            "-fapp@example.com",
            "-F",
            "App",
            "a@x.test,b@y.test",
            "--",
            "-odd@z.test",
        ]))
        .unwrap();
        assert!(a.extract && a.ignore_dots);
        assert_eq!(a.from.as_deref(), Some("app@example.com"));
        assert_eq!(a.full_name.as_deref(), Some("App"));
        assert_eq!(a.rcpts, ["a@x.test", "b@y.test", "-odd@z.test"]);
        let a = parse(&s(&["-f", "x@y.test", "-odb", "-v", "r@z.test"])).unwrap();
        assert_eq!(a.from.as_deref(), Some("x@y.test"));
        assert_eq!(a.rcpts, ["r@z.test"]);
        assert!(parse(&s(&["-bp"])).is_err());
        assert!(parse(&s(&["-f"])).is_err());
        assert!(parse(&s(&["-Z"])).is_err());
    }
}
