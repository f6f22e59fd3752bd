//! `volley user add|remove|list` (the SMTP submission users file) and
//! `volley tls-cert` (a self-signed pair for testing TLS listeners).

use std::io::BufRead;
use std::path::Path;

use volley_engine::events::sns::signer::{self_signed_pair, write_durably};
use volley_engine::submission::auth::{UserEntry, UsersFile, hash_password};

use super::{CliResult, EXIT_OK, bad, fail, load_config};

fn check_name(name: &str) -> Result<(), super::CliError> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@+".contains(&b))
    {
        return Err(bad(anyhow::anyhow!(
            "user name {name:?}: 1-128 letters, digits and . _ - @ +"
        )));
    }
    Ok(())
}

/// `volley user add`: the password is the first line of standard input.
pub fn add(
    config: &Path,
    name: &str,
    identities: Vec<String>,
    max_send_rate: f64,
    max_24_hour_send: u64,
) -> CliResult {
    let config = load_config(config)?;
    check_name(name)?;
    for i in &identities {
        let ok = if i.contains('@') {
            volley_engine::address::parse(i).is_ok()
        } else {
            volley_engine::address::check_domain(i).is_ok()
        };
        if !ok {
            return Err(bad(anyhow::anyhow!(
                "identity {i:?} is neither an address nor a domain"
            )));
        }
    }
    if !(max_send_rate >= 0.0 && max_send_rate.is_finite()) {
        return Err(bad(anyhow::anyhow!("--max-send-rate must be 0 or more")));
    }
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .map_err(fail)?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.len() < 8 {
        return Err(bad(anyhow::anyhow!(
            "give the password (at least 8 characters) on standard input"
        )));
    }
    let path = &config.submission.users;
    let mut file = UsersFile::load(path).map_err(|e| fail(anyhow::anyhow!(e)))?;
    let replaced = file
        .users
        .insert(
            name.to_string(),
            UserEntry {
                password: hash_password(password),
                identities,
                max_send_rate,
                max_24_hour_send,
            },
        )
        .is_some();
    file.save(path).map_err(|e| fail(anyhow::anyhow!(e)))?;
    println!(
        "{} user {name} in {} (a running `volley run` applies it on SIGHUP)",
        if replaced { "updated" } else { "added" },
        path.display()
    );
    Ok(EXIT_OK)
}

/// `volley user remove`.
pub fn remove(config: &Path, name: &str) -> CliResult {
    let config = load_config(config)?;
    let path = &config.submission.users;
    let mut file = UsersFile::load(path).map_err(|e| fail(anyhow::anyhow!(e)))?;
    if file.users.remove(name).is_none() {
        return Err(bad(anyhow::anyhow!(
            "no user {name:?} in {}",
            path.display()
        )));
    }
    file.save(path).map_err(|e| fail(anyhow::anyhow!(e)))?;
    println!("removed user {name}");
    Ok(EXIT_OK)
}

/// `volley user list`.
pub fn list(config: &Path) -> CliResult {
    let config = load_config(config)?;
    let file = UsersFile::load(&config.submission.users).map_err(|e| fail(anyhow::anyhow!(e)))?;
    for (name, u) in &file.users {
        println!(
            "{name}\tidentities={}\tmax_send_rate={}\tmax_24_hour_send={}",
            u.identities.join(","),
            u.max_send_rate,
            u.max_24_hour_send
        );
    }
    Ok(EXIT_OK)
}

/// `volley tls-cert`: never replaces existing files.
pub fn tls_cert(name: &str, cert: &Path, key: &Path) -> CliResult {
    for p in [cert, key] {
        if p.exists() {
            return Err(bad(anyhow::anyhow!("{} exists; not replaced", p.display())));
        }
    }
    let (key_pem, cert_pem) = self_signed_pair(name).map_err(|e| fail(anyhow::anyhow!(e)))?;
    write_durably(key, &key_pem, 0o600).map_err(|e| fail(anyhow::anyhow!(e)))?;
    write_durably(cert, &cert_pem, 0o644).map_err(|e| fail(anyhow::anyhow!(e)))?;
    println!(
        "certificate: {}\nkey:         {}",
        cert.display(),
        key.display()
    );
    Ok(EXIT_OK)
}
