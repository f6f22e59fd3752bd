//! Which addresses no public mail host has (RFC 6890's special-purpose
//! blocks and the IANA registries): MX hosts, and MTA-STS policy hosts, at
//! such addresses are refused unless `[dns] allow_internal`. Pure.

use std::net::IpAddr;
/// Special-purpose IPv4 blocks (RFC 6890 and the IANA registry it set up,
/// plus multicast and the reserved 240/4): no mail host on the public
/// internet is at one of these. (network, prefix length)
const INTERNAL_V4: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),       // "this network" (RFC 791)
    ([10, 0, 0, 0], 8),      // private (RFC 1918)
    ([100, 64, 0, 0], 10),   // shared address space, CGNAT (RFC 6598)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local, cloud metadata services (RFC 3927)
    ([172, 16, 0, 0], 12),   // private (RFC 1918)
    ([192, 0, 0, 0], 24),    // IETF protocol assignments (RFC 6890)
    ([192, 0, 2, 0], 24),    // documentation, TEST-NET-1 (RFC 5737)
    ([192, 88, 99, 0], 24),  // deprecated 6to4 relay anycast (RFC 7526)
    ([192, 168, 0, 0], 16),  // private (RFC 1918)
    ([198, 18, 0, 0], 15),   // benchmarking (RFC 2544)
    ([198, 51, 100, 0], 24), // documentation, TEST-NET-2 (RFC 5737)
    ([203, 0, 113, 0], 24),  // documentation, TEST-NET-3 (RFC 5737)
    ([224, 0, 0, 0], 4),     // multicast (RFC 5771)
    ([240, 0, 0, 0], 4),     // reserved, and 255.255.255.255 broadcast (RFC 1112)
];

/// Special-purpose IPv6 blocks without a public mail host (RFC 6890 and
/// the IANA registry). Blocks that embed an IPv4 address (IPv4-mapped,
/// NAT64, 6to4) are judged by that address instead. (network, prefix length)
const INTERNAL_V6: &[(u128, u8)] = &[
    (0, 96),                      // unspecified, loopback, IPv4-compatible (deprecated)
    (0x0064_ff9b_0001 << 80, 48), // local-use IPv4/IPv6 translation (RFC 8215)
    (0x0100 << 112, 64),          // discard-only (RFC 6666)
    (0x2001 << 112, 23),          // IETF protocol assignments, Teredo (RFC 2928, 4380)
    (0x2001_0db8 << 96, 32),      // documentation (RFC 3849)
    (0x3fff << 112, 20),          // documentation (RFC 9637)
    (0x5f00 << 112, 16),          // segment routing SIDs (RFC 9602)
    (0xfc00 << 112, 7),           // unique local, ULA (RFC 4193)
    (0xfe80 << 112, 10),          // link-local
    (0xfec0 << 112, 10),          // site-local (deprecated, RFC 3879)
    (0xff00 << 112, 8),           // multicast
];

fn in_v4(ip: std::net::Ipv4Addr, (net, len): ([u8; 4], u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from_be_bytes(net) & mask
}

fn in_v6(ip: std::net::Ipv6Addr, (net, len): (u128, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == net & mask
}

/// The IPv4 address an IPv6 address stands for, where it embeds one:
/// IPv4-mapped (`::ffff:a.b.c.d`), the NAT64 well-known prefix
/// (`64:ff9b::/96`, RFC 6052) and 6to4 (`2002::/16`, RFC 3056).
fn embedded_v4(ip: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let n = u128::from(ip);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if in_v6(ip, (0x0064_ff9b << 96, 96)) {
        return Some(std::net::Ipv4Addr::from(n as u32));
    }
    if in_v6(ip, (0x2002 << 112, 16)) {
        return Some(std::net::Ipv4Addr::from((n >> 80) as u32));
    }
    None
}

/// An address no mail host on the public internet has: loopback, private
/// (RFC 1918, ULA), shared (CGNAT), link-local (including cloud metadata
/// services), documentation, benchmarking, multicast, reserved, and the
/// rest of the special-purpose registries (RFC 6890). A hostile domain's MX
/// pointing here would make the engine talk to services on its own machine
/// or network.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => INTERNAL_V4.iter().any(|b| in_v4(a, *b)),
        IpAddr::V6(a) => match embedded_v4(a) {
            Some(v4) => is_internal(IpAddr::V4(v4)),
            None => INTERNAL_V6.iter().any(|b| in_v6(a, *b)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "127.91.3.4",
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::10.0.0.1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "fc00::1",
            "fd12:3456::1",
            "2001:db8::1",
            "2001::1",
            "3fff::1",
            "100::1",
            "64:ff9b:1::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.3.1",
            "192.169.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2a00:1450:4001:80b::200e",
            "2607:f8b0::1",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }
}
