//! Email address checks for recipients and senders (pure).
//!
//! Accepts what SES accepts on the wire: an ASCII dot-atom local part (no
//! SMTPUTF8, no quoted local parts) and a host name domain of at least two
//! labels (IDN domains must already be Punycode), within RFC 5321's length
//! limits. The domain is lower-cased. Anything else is rejected with a reason
//! a person can act on. Exposure: every input comes from recipient lists and
//! campaign files; CR, LF, spaces and angle brackets can never pass, so an
//! accepted address cannot inject SMTP commands or headers.

/// A checked address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// `local@domain`, domain lower-cased.
    pub email: String,
}

impl Address {
    pub fn domain(&self) -> &str {
        volley_spool::domain_of(&self.email)
    }
}

fn atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// Checks one address (surrounding whitespace is ignored).
pub fn parse(input: &str) -> Result<Address, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty address".into());
    }
    if !s.is_ascii() {
        return Err(
            "non-ASCII address (SMTPUTF8 is not supported; write the domain in Punycode)".into(),
        );
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return Err("missing @".into());
    };
    if local.is_empty() {
        return Err("empty local part".into());
    }
    if local.len() > 64 {
        return Err(format!(
            "local part is {} characters; the limit is 64",
            local.len()
        ));
    }
    if local.starts_with('"') {
        return Err("quoted local parts are not supported".into());
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("local part has a misplaced dot".into());
    }
    if let Some(b) = local.bytes().find(|&b| b != b'.' && !atext(b)) {
        return Err(format!(
            "character {:?} is not allowed in the local part",
            b as char
        ));
    }
    let domain = check_domain_ref(domain)?;
    let len = local.len() + 1 + domain.len();
    if len > 254 {
        return Err(format!("address is {len} characters; the limit is 254"));
    }
    let mut email = String::with_capacity(len);
    email.push_str(local);
    email.push('@');
    email.push_str(domain);
    email[local.len() + 1..].make_ascii_lowercase();
    Ok(Address { email })
}

/// Checks a domain name; returns it lower-cased.
pub fn check_domain(domain: &str) -> Result<String, String> {
    check_domain_ref(domain).map(str::to_ascii_lowercase)
}

/// Checks a domain name; returns it without a trailing dot (case kept).
fn check_domain_ref(domain: &str) -> Result<&str, String> {
    if domain.is_empty() {
        return Err("empty domain".into());
    }
    if domain.starts_with('[') {
        return Err("address literals are not supported".into());
    }
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.len() > 253 {
        return Err("domain is longer than 253 characters".into());
    }
    if !domain.contains('.') {
        return Err(format!("domain {domain:?} has no dot"));
    }
    for l in domain.split('.') {
        if l.is_empty() || l.len() > 63 {
            return Err(format!("domain {domain:?} has an empty or over-long label"));
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err(format!("domain label {l:?} starts or ends with '-'"));
        }
        if let Some(b) = l.bytes().find(|b| !b.is_ascii_alphanumeric() && *b != b'-') {
            return Err(format!(
                "character {:?} is not allowed in the domain",
                b as char
            ));
        }
    }
    Ok(domain)
}

/// A sender in `Name <addr>` or bare `addr` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: Address,
}

/// Parses `Name <addr>`, `"Name" <addr>` or `addr`.
pub fn parse_mailbox(input: &str) -> Result<Mailbox, String> {
    let s = input.trim();
    if s.contains(['\r', '\n']) {
        return Err("line breaks are not allowed".into());
    }
    if let Some(open) = s.rfind('<') {
        let rest = &s[open + 1..];
        let close = rest.find('>').ok_or("missing '>'")?;
        if !rest[close + 1..].trim().is_empty() {
            return Err("text after '>'".into());
        }
        let address = parse(&rest[..close])?;
        let name = s[..open].trim().trim_matches('"').trim();
        Ok(Mailbox {
            name: (!name.is_empty()).then(|| name.to_string()),
            address,
        })
    } else {
        Ok(Mailbox {
            name: None,
            address: parse(s)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normal_addresses() {
        for a in [
            "a@b.co",
            "first.last+tag@Example.COM",
            " x@y.test ",
            "o'neil@d-1.test",
            "a@b.test.",
        ] {
            let p = parse(a).unwrap_or_else(|e| panic!("{a}: {e}"));
            assert_eq!(p.domain(), p.domain().to_ascii_lowercase());
        }
        assert_eq!(parse("A@EXAMPLE.com").unwrap().email, "A@example.com");
    }

    #[test]
    fn rejects_with_reasons() {
        let cases = [
            ("", "empty"),
            ("nobody", "missing @"),
            ("@x.test", "empty local"),
            ("a@", "empty domain"),
            ("a@localhost", "no dot"),
            ("a..b@x.test", "misplaced dot"),
            ("a b@x.test", "not allowed"),
            ("a@x_y.test", "not allowed"),
            ("a@-x.test", "starts or ends"),
            ("ü@x.test", "non-ASCII"),
            ("a@x.test\r\nRCPT TO:<b@y.test>", "not allowed"),
            ("a@[1.2.3.4]", "literal"),
            ("\"q\"@x.test", "quoted"),
        ];
        for (a, want) in cases {
            let e = parse(a).unwrap_err();
            assert!(e.contains(want), "{a:?}: {e}");
        }
        assert!(parse(&format!("{}@x.test", "a".repeat(65))).is_err());
    }

    #[test]
    fn mailboxes() {
        let m = parse_mailbox("Volley News <news@example.com>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Volley News"));
        assert_eq!(m.address.email, "news@example.com");
        let m = parse_mailbox("\"Q, Inc\" <q@example.com>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Q, Inc"));
        assert!(parse_mailbox("bare@example.com").unwrap().name.is_none());
        assert!(parse_mailbox("x <a@b.test").is_err());
        assert!(parse_mailbox("x <a@b.test>\r\nBcc: z@z.test").is_err());
    }
}
