//! Sizes in the config: an integer (bytes), or a string like `"100MB"`,
//! `"1GiB"`, `"512k"` (k, M, G, T; powers of 1024). Pure.

use serde::{Deserialize, Deserializer};

pub fn parse(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = t.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("bad size {s:?} (e.g. 104857600, \"100MB\", \"1GiB\")"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("bad size unit in {s:?} (k, M, G or T)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(t) => parse(&t).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse() {
        assert_eq!(super::parse("100"), Ok(100));
        assert_eq!(super::parse("100MB"), Ok(100 << 20));
        assert_eq!(super::parse("1 GiB"), Ok(1 << 30));
        assert_eq!(super::parse("512k"), Ok(512 << 10));
        assert!(super::parse("12 furlongs").is_err());
        assert!(super::parse("MB").is_err());
        assert!(super::parse("99999999999T").is_err());
    }
}
