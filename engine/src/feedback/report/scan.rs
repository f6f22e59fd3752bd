//! Small scanners shared by the report parsers: capped copies of text,
//! "Name: value" field groups (RFC 3464 / RFC 5965 style, folded lines
//! unfolded), addresses, SMTP reply codes, RFC 3463 enhanced status codes
//! and bracketed IP addresses found in diagnostic text.
//!
//! In: text decoded from a report (any content). Out: owned, capped strings.
//! Invariants: every scan is a single forward pass with bounded look-ahead
//! (no backtracking, no quadratic work); nothing indexes the input in a way
//! that can fail; every string copied out is capped (`TEXT_CAP` unless
//! stated). Exposure: hostile network input.

use std::net::IpAddr;

/// Most bytes kept of any one text copied out of a report.
pub(super) const TEXT_CAP: usize = 1024;

/// A copy of `s`, trimmed and cut to at most `max` bytes on a char boundary.
pub(super) fn cap(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().trim_end().to_string()
}

/// `s` cut to at most `max` bytes on a char boundary (borrowed).
pub(super) fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Lines of `text` without their line ending.
pub(super) fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l))
}

/// True when `hay` (already lowercase) contains any of `needles`.
pub(super) fn contains_any(hay: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| hay.contains(n))
}

/// The field name of a "Name: value" line, when the line is one.
pub(super) fn field_name(line: &str) -> Option<(&str, &str)> {
    let colon = line.get(..80.min(line.len())).and_then(|l| l.find(':'))?;
    let name = line.get(..colon)?;
    let name = name.trim_end();
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        return None;
    }
    Some((name, line.get(colon + 1..).unwrap_or_default()))
}

/// One unfolded field: lowercase name, trimmed value (capped).
pub(super) type Field = (String, String);

/// Field groups of `text`, split at blank lines; folded lines are unfolded,
/// lines that are not fields end the current field and are skipped. At most
/// `max_fields` fields in all.
pub(super) fn field_groups(text: &str, max_fields: usize) -> Vec<Vec<Field>> {
    let mut groups: Vec<Vec<Field>> = Vec::new();
    let mut group: Vec<Field> = Vec::new();
    let mut total = 0usize;
    let mut open = false; // the last line was a field that may continue
    for line in lines(text) {
        if line.trim().is_empty() {
            if !group.is_empty() {
                groups.push(std::mem::take(&mut group));
            }
            open = false;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if open
                && let Some((_, value)) = group.last_mut()
                && value.len() < TEXT_CAP
            {
                value.push(' ');
                value.push_str(prefix(line.trim(), TEXT_CAP - value.len().min(TEXT_CAP)));
            }
            continue;
        }
        match field_name(line) {
            Some((name, value)) if total < max_fields => {
                total += 1;
                group.push((name.to_ascii_lowercase(), cap(value, TEXT_CAP)));
                open = true;
            }
            Some(_) => break,
            None => open = false,
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// The value of the first field `name` (lowercase) in `group`.
pub(super) fn get<'a>(group: &'a [Field], name: &str) -> Option<&'a str> {
    group
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// "type; text" as SES writes typed fields ("dns; mx.example.com",
/// "smtp; 550 ..."): one space after the semicolon. A value without a type
/// is kept as it is.
pub(super) fn typed(value: &str) -> String {
    match value.split_once(';') {
        Some((kind, rest))
            if !kind.trim().is_empty() && !kind.trim().contains(char::is_whitespace) =>
        {
            cap(&format!("{}; {}", kind.trim(), rest.trim()), TEXT_CAP)
        }
        _ => cap(value, TEXT_CAP),
    }
}

/// The text after the type of a typed field ("rfc822; a@b" -> "a@b").
pub(super) fn untyped(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest)) if !kind.trim().contains(char::is_whitespace) => rest.trim(),
        _ => value.trim(),
    }
}

/// A plausible mailbox address from `s` (angle brackets, quotes and a
/// "mailto:" dropped), domain lowercased. None unless it has one `@` with a
/// non-empty local part and domain and no whitespace or control characters.
pub(super) fn address(s: &str) -> Option<String> {
    let s = s
        .trim()
        .trim_matches(|c| matches!(c, '<' | '>' | '"' | '\'' | ',' | ';'));
    let s = s.strip_prefix("mailto:").unwrap_or(s).trim();
    if s.len() > 320
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>()[],;\"".contains(c))
    {
        return None;
    }
    let (local, domain) = s.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.');
    if local.is_empty() || domain.is_empty() || local.contains('@') || !domain.contains('.') {
        return None;
    }
    Some(format!("{local}@{}", domain.to_ascii_lowercase()))
}

/// The first address written as `<addr>` in `s`, or the first bare word
/// that is an address.
pub(super) fn first_address(s: &str) -> Option<String> {
    let s = prefix(s, 4 * TEXT_CAP);
    let mut rest = s;
    while let Some(open) = rest.find('<') {
        let after = rest.get(open + 1..).unwrap_or_default();
        let Some(close) = after.find('>') else { break };
        if let Some(a) = address(after.get(..close).unwrap_or_default()) {
            return Some(a);
        }
        rest = after.get(close + 1..).unwrap_or_default();
    }
    s.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .find_map(address)
}

/// A normalized RFC 3463 status "c.s.d" found in `text` (class 2, 4 or 5).
pub(super) fn enhanced_code(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let digits = |mut i: usize| {
        let start = i;
        while i < b.len() && i - start < 4 && b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i - start, i)
    };
    for (i, &c) in b.iter().enumerate() {
        if !matches!(c, b'2' | b'4' | b'5') || b.get(i + 1) != Some(&b'.') {
            continue;
        }
        if i > 0
            && b.get(i - 1)
                .is_some_and(|p| p.is_ascii_alphanumeric() || *p == b'.')
        {
            continue;
        }
        let (n1, j) = digits(i + 2);
        if !(1..=3).contains(&n1) || b.get(j) != Some(&b'.') {
            continue;
        }
        let (n2, k) = digits(j + 1);
        if !(1..=3).contains(&n2) {
            continue;
        }
        let next_is_more = b.get(k).is_some_and(|c| c.is_ascii_alphanumeric())
            || (b.get(k) == Some(&b'.') && b.get(k + 1).is_some_and(u8::is_ascii_digit));
        if next_is_more {
            continue;
        }
        let subject: u16 = text.get(i + 2..j)?.parse().ok()?;
        let detail: u16 = text.get(j + 1..k)?.parse().ok()?;
        return Some(format!("{}.{subject}.{detail}", c as char));
    }
    None
}

/// The byte offset and value of the first SMTP reply code (4xx or 5xx)
/// in `text`, as written in a diagnostic ("said: 550 ...", "#550 ...").
pub(super) fn smtp_code(text: &str) -> Option<(usize, u16)> {
    let b = text.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if !matches!(c, b'4' | b'5') {
            continue;
        }
        if i > 0
            && b.get(i - 1)
                .is_some_and(|p| p.is_ascii_alphanumeric() || b".:-_/".contains(p))
        {
            continue;
        }
        let three = b.get(i + 1).is_some_and(u8::is_ascii_digit)
            && b.get(i + 2).is_some_and(u8::is_ascii_digit);
        let end_ok = matches!(
            b.get(i + 3),
            None | Some(b' ' | b'-' | b'\t' | b',' | b'\r' | b'\n')
        );
        if three && end_ok {
            let code = text.get(i..i + 3)?.parse().ok()?;
            return Some((i, code));
        }
    }
    None
}

/// The first IP address written in brackets ("[192.0.2.1]",
/// "[IPv6:2001:db8::1]") in `text`, or `text` itself when it is an address.
pub(super) fn ip_in(text: &str) -> Option<String> {
    let plain = text
        .trim()
        .trim_matches(|c| matches!(c, '[' | ']' | '(' | ')' | '.' | ',' | ';'));
    if let Ok(ip) = plain.trim_start_matches("IPv6:").parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let text = prefix(text, 4 * TEXT_CAP);
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = rest.get(open + 1..).unwrap_or_default();
        let Some(close) = after.get(..after.len().min(50)).and_then(|a| a.find(']')) else {
            rest = after;
            continue;
        };
        let inner = after.get(..close).unwrap_or_default();
        let inner = inner
            .strip_prefix("IPv6:")
            .or_else(|| inner.strip_prefix("ipv6:"))
            .unwrap_or(inner);
        if let Ok(ip) = inner.parse::<IpAddr>() {
            return Some(ip.to_string());
        }
        rest = after.get(close + 1..).unwrap_or_default();
    }
    None
}

/// The status implied by a diagnostic: its enhanced code, else the class of
/// its SMTP reply code ("550" -> "5.0.0").
pub(super) fn status_from_diagnostic(diag: &str) -> Option<String> {
    let diag = prefix(diag, 4 * TEXT_CAP);
    match (smtp_code(diag), enhanced_code(diag)) {
        (_, Some(e)) => Some(e),
        (Some((_, code)), None) => Some(format!("{}.0.0", code / 100)),
        (None, None) => None,
    }
}

/// A status field value normalized to "c.s.d" (None if it has none).
pub(super) fn normalize_status(value: &str) -> Option<String> {
    enhanced_code(prefix(value, TEXT_CAP))
}
