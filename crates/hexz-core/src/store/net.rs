//! Restricted network addresses: which IPs a remote archive may not point at unless the user
//! allows it, and a DNS resolver for the HTTP agent that enforces it.
//!
//! An archive URL often comes from someone else (a dataset list, a config file). Without a
//! check, `http://169.254.169.254/…` would read the cloud metadata service and
//! `http://10.0.0.5/…` a host on the private network behind the caller. The check runs on the
//! addresses a host name *resolves to*, at connection time, so neither a DNS name pointing at
//! a private address nor a redirect to one slips through: every request, redirects included,
//! connects through [`GuardedResolver`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// Why `ip` is restricted (loopback, private, …), or `None` for an ordinary public address.
pub fn restricted_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [169, 254, 169, 254] => "cloud metadata service",
        [0, ..] => "unspecified/this network",
        [127, ..] => "loopback",
        [10, ..] => "private",
        [172, b, ..] if (16..32).contains(&b) => "private",
        [192, 168, ..] => "private",
        [100, b, ..] if (64..128).contains(&b) => "carrier-grade NAT",
        [169, 254, ..] => "link-local",
        [192, 0, 0, _] => "IETF protocol assignments",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation",
        [198, b, ..] if b == 18 || b == 19 => "benchmarking",
        [a, ..] if (224..240).contains(&a) => "multicast",
        [a, ..] if a >= 240 => "reserved/broadcast",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    // Addresses that embed an IPv4 address are judged by it: IPv4-mapped (::ffff:a.b.c.d),
    // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d).
    let embedded =
        |s: &[u16; 8]| Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return Some(v4_reason(embedded(&s)).unwrap_or("IPv4-mapped"));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return v4_reason(embedded(&s));
    }
    Some(match s[0] {
        x if x & 0xfe00 == 0xfc00 => "unique local (private)",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "site-local",
        x if x & 0xff00 == 0xff00 => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        _ => return None,
    })
}

/// The message of a refused connection; also how [`crate::store::http`] recognises it.
pub(crate) const REFUSED: &str = "refusing to connect to restricted address";

/// A resolver that drops restricted addresses (unless allowed) after the system resolver
/// answers; a host with nothing else left is refused with a message naming the address and
/// how to allow it.
#[derive(Debug, Default)]
pub(crate) struct GuardedResolver {
    /// Allow restricted addresses (`--allow-restricted`, `HEXZ_ALLOW_RESTRICTED=1`).
    pub allow_restricted: bool,
    inner: DefaultResolver,
}

impl GuardedResolver {
    pub(crate) fn new(allow_restricted: bool) -> Self {
        GuardedResolver {
            allow_restricted,
            inner: DefaultResolver::default(),
        }
    }
}

impl Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let all = self.inner.resolve(uri, config, timeout)?;
        if self.allow_restricted {
            return Ok(all);
        }
        let mut kept = self.inner.empty();
        let mut refused: Option<(SocketAddr, &'static str)> = None;
        for a in all.iter() {
            match restricted_reason(a.ip()) {
                Some(why) => refused = refused.or(Some((*a, why))),
                None => kept.push(*a),
            }
        }
        if kept.is_empty() {
            let (addr, why) = refused.ok_or(ureq::Error::HostNotFound)?;
            return Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{REFUSED} {} ({why}) of host {}; pass --allow-restricted or set \
                     HEXZ_ALLOW_RESTRICTED=1 to allow it",
                    addr.ip(),
                    uri.host().unwrap_or("?")
                ),
            )));
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Option<&'static str> {
        restricted_reason(s.parse().unwrap())
    }

    #[test]
    fn classifies_addresses() {
        for s in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::10.0.0.1",
            "ff02::1",
        ] {
            assert!(r(s).is_some(), "{s} should be restricted");
        }
        assert_eq!(r("169.254.169.254"), Some("cloud metadata service"));
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "172.15.0.1",
            "100.128.0.1",
            "100.63.0.1",
            "2606:4700::1111",
            "64:ff9b::8.8.8.8",
        ] {
            assert_eq!(r(s), None, "{s} should be allowed");
        }
    }
}
