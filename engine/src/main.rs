//! `volley`: the command line. Parses arguments, sets up logging and the
//! tokio runtime, runs one command and maps its result to an exit code:
//! 0 success, 1 failure, 2 bad input (config, campaign, files, usage);
//! for `send`: 3 recipients remain deferred, 4 rows were rejected, 5 both,
//! 128 + the signal when stopped by SIGINT or SIGTERM (see `cli`). The only
//! user of anyhow.
//!
//! The process allocates with mimalloc: a message's buffers are made on a
//! production thread and freed on an I/O thread, a pattern glibc's malloc
//! serves with arena locks and consolidation (about a tenth of the CPU of
//! a send, measured with `perf`); the one process-wide static there is.
//! It is built without transparent huge pages (`no_thp`): a new 2 MiB of
//! heap was zeroed whole at its first touch, for buffers that use little
//! of it (peak RSS a third lower, CPU no higher).

mod cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use volley_engine::message::keygen::KeyAlgorithm;

#[derive(Parser)]
#[command(
    name = "volley",
    version,
    about = "Self-hosted bulk email sending engine"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send a generated campaign end to end to a built-in sink and report.
    Demo {
        /// Recipients to generate.
        #[arg(long, default_value_t = 10_000)]
        recipients: u32,
        /// Recipient domains to spread them over.
        #[arg(long, default_value_t = 50)]
        domains: u32,
        /// Keep the demo's files (spool, events, key, campaign) in this directory.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Spool a campaign and deliver it; exits when nothing is left but deferrals.
    Send {
        campaign: PathBuf,
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Only spool a campaign (durably); `volley run` delivers it.
    Enqueue {
        campaign: PathBuf,
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// The service: deliver what the spool holds, serve /metrics and /healthz.
    Run {
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Counts by state per campaign and per domain.
    Status {
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A receiving SMTP server that accepts everything (for development).
    Sink {
        #[arg(long, default_value = "127.0.0.1:2525")]
        listen: SocketAddr,
        /// Store each message in this Maildir.
        #[arg(long)]
        maildir: Option<PathBuf>,
    },
    /// Manage SMTP submission users (the `[submission] users` file).
    User {
        #[command(subcommand)]
        action: UserAction,
        #[arg(long, default_value = "config.toml", global = true)]
        config: PathBuf,
    },
    /// The account's suppression list (through the running service when
    /// there is one).
    Suppression {
        #[command(subcommand)]
        action: cli::suppression::Action,
        #[arg(long, default_value = "config.toml", global = true)]
        config: PathBuf,
    },
    /// Operators' actions on the running service's queue (retry now), and
    /// their log.
    Queue {
        #[command(subcommand)]
        action: cli::queue::QueueAction,
        #[arg(long, default_value = "config.toml", global = true)]
        config: PathBuf,
    },
    /// Bounce and complaint handling tools.
    Feedback {
        #[command(subcommand)]
        action: cli::feedback::Action,
    },
    /// The sendmail interface (sendmail's options: -t, -i, -f ADDR, ...):
    /// the message on standard input goes into the drop directory.
    Sendmail {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Make a self-signed certificate and key (PEM) for testing TLS.
    TlsCert {
        #[arg(long, default_value = "localhost")]
        name: String,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Make a DKIM key pair and its DNS TXT record.
    Keygen {
        #[arg(long, value_enum)]
        algorithm: KeyAlgorithm,
        #[arg(long)]
        domain: String,
        #[arg(long)]
        selector: String,
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Replace an existing key and TXT file (otherwise refused).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user or replace its password and settings (the password is
    /// read from standard input, one line).
    Add {
        name: String,
        /// An address or domain the user may send as (repeat for more).
        #[arg(long = "identity", required = true)]
        identities: Vec<String>,
        /// Recipients per second (0: no limit).
        #[arg(long, default_value_t = 0.0)]
        max_send_rate: f64,
        /// Recipients per rolling 24 hours (0: no limit).
        #[arg(long = "max-24-hour-send", default_value_t = 0)]
        max_24_hour_send: u64,
    },
    /// Remove a user.
    Remove { name: String },
    /// List users and their identities.
    List,
}

/// Raises the open-file limit to its hard maximum: a sending engine keeps
/// many connections and files open.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() -> ExitCode {
    // called as `sendmail` (installed as /usr/sbin/sendmail), or `volley
    // sendmail ...`: sendmail's own argument syntax, not clap's
    let argv: Vec<String> = std::env::args().collect();
    let called = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "sendmail");
    if called {
        return ExitCode::from(cli::sendmail::main(&argv[1..]));
    }
    if argv.get(1).is_some_and(|a| a == "sendmail") {
        return ExitCode::from(cli::sendmail::main(&argv[2..]));
    }
    let args = Cli::parse();
    raise_nofile_limit();
    let filter = tracing_subscriber::EnvFilter::try_from_env("VOLLEY_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("volley_engine=info,volley_spool=info,volley=info,warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(async {
        match args.cmd {
            Cmd::Demo {
                recipients,
                domains,
                keep,
            } => cli::demo::run(recipients, domains, keep).await,
            Cmd::Send { campaign, config } => cli::send::send(&campaign, &config).await,
            Cmd::Enqueue { campaign, config } => cli::send::enqueue(&campaign, &config).await,
            Cmd::Run { config } => cli::run::run(&config).await,
            Cmd::User { action, config } => match action {
                UserAction::Add {
                    name,
                    identities,
                    max_send_rate,
                    max_24_hour_send,
                } => cli::user::add(&config, &name, identities, max_send_rate, max_24_hour_send),
                UserAction::Remove { name } => cli::user::remove(&config, &name),
                UserAction::List => cli::user::list(&config),
            },
            Cmd::Suppression { action, config } => {
                cli::suppression::command(&config, action.into()).await
            }
            Cmd::Queue { action, config } => cli::queue::command(&config, action).await,
            Cmd::Feedback { action } => cli::feedback::command(action),
            Cmd::Sendmail { args } => Ok(cli::sendmail::main(&args)),
            Cmd::TlsCert { name, cert, key } => cli::user::tls_cert(&name, &cert, &key),
            Cmd::Status { config, json } => cli::run::status(&config, json),
            Cmd::Sink { listen, maildir } => cli::run::sink(listen, maildir).await,
            Cmd::Keygen {
                algorithm,
                domain,
                selector,
                out,
                force,
            } => cli::run::keygen(algorithm, &domain, &selector, &out, force),
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {:#}", e.error);
            ExitCode::from(e.code)
        }
    }
}
