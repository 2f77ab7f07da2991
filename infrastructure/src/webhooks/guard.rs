//! The address guard: where a webhook may be sent. A receiver's URL is chosen by whoever holds an
//! admin key, and the ledger sends from inside its network, so a URL naming an internal address
//! (the loopback, a private network, a cloud's metadata service) would let that person reach
//! what only the ledger can. Every address is checked when the request is about to be made (the
//! one a name resolves to at that moment, and the connection goes to exactly that address), not
//! only when the subscription is made: a name may resolve elsewhere later.
//!
//! Pure functions: they decide on an address or a URL, and never resolve or connect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::Url;

/// Longest receiver URL.
pub const URL_BYTES_MAX: usize = 2_048;

/// Why an address is not one the ledger sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Internal {
    Unspecified,
    Loopback,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16).
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// fc00::/7.
    UniqueLocal,
    /// 100.64/10, carrier-grade NAT (RFC 6598).
    SharedCgnat,
    /// A cloud's instance metadata service: 169.254.169.254, fd00:ec2::254.
    Metadata,
    /// Multicast, broadcast, and the reserved and "this network" ranges: never a receiver.
    NotUnicast,
}

impl Internal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified",
            Self::Loopback => "a loopback",
            Self::Private => "a private",
            Self::LinkLocal => "a link-local",
            Self::UniqueLocal => "a unique-local",
            Self::SharedCgnat => "a shared (CGNAT)",
            Self::Metadata => "a cloud metadata",
            Self::NotUnicast => "a multicast, broadcast or reserved",
        }
    }

    /// What the operator could do about it.
    fn hint(self) -> &'static str {
        if self.allowed_when_private_allowed() {
            " (allowed only with --webhook-allow-private)"
        } else {
            ", never allowed"
        }
    }

    /// Whether `--webhook-allow-private` lets the ledger send there. Metadata services never:
    /// nothing legitimate receives webhooks there, and their credentials are the prize of SSRF.
    /// Nor can a request be sent to a multicast or reserved address.
    fn allowed_when_private_allowed(self) -> bool {
        !matches!(self, Self::Metadata | Self::NotUnicast)
    }
}

/// An address the ledger refused to send to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{address} is {} address{}", .class.as_str(), .class.hint())]
pub struct Refused {
    pub address: IpAddr,
    pub class: Internal,
}

/// What kind of internal address `ip` is; `None` for a public unicast address.
pub fn classify(ip: IpAddr) -> Option<Internal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Internal> {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some(Internal::Metadata)
    } else if ip.is_unspecified() {
        Some(Internal::Unspecified)
    } else if ip.is_loopback() {
        Some(Internal::Loopback)
    } else if ip.is_private() {
        Some(Internal::Private)
    } else if ip.is_link_local() {
        Some(Internal::LinkLocal)
    } else if a == 100 && (64..128).contains(&b) {
        Some(Internal::SharedCgnat)
    } else if a == 0 || a >= 224 || ip.is_broadcast() {
        // 0/8 "this network", 224/4 multicast, 240/4 reserved, 255.255.255.255.
        Some(Internal::NotUnicast)
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Internal> {
    // An IPv4 address written as IPv6 (::ffff:a.b.c.d, or NAT64's 64:ff9b::a.b.c.d) reaches the
    // IPv4 address: it is judged as that.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let segments = ip.segments();
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., a, b, c, d] = ip.octets();
        return classify_v4(Ipv4Addr::new(a, b, c, d));
    }
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        Some(Internal::Metadata)
    } else if ip.is_unspecified() {
        Some(Internal::Unspecified)
    } else if ip.is_loopback() {
        Some(Internal::Loopback)
    } else if segments[0] & 0xffc0 == 0xfe80 {
        Some(Internal::LinkLocal)
    } else if segments[0] & 0xfe00 == 0xfc00 {
        Some(Internal::UniqueLocal)
    } else if ip.is_multicast() {
        Some(Internal::NotUnicast)
    } else {
        None
    }
}

/// Whether the ledger may send to `ip`.
pub fn check(ip: IpAddr, allow_private: bool) -> Result<(), Refused> {
    match classify(ip) {
        None => Ok(()),
        Some(class) if allow_private && class.allowed_when_private_allowed() => Ok(()),
        Some(class) => Err(Refused { address: ip, class }),
    }
}

/// A receiver's URL, checked for its form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: Url,
    /// The host when it is an IP address (no name to resolve): checked before anything is sent.
    pub literal: Option<IpAddr>,
}

/// Why a URL cannot be a receiver's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("url {0}")]
pub struct BadUrl(String);

/// Parses a receiver's URL: `http` or `https` (when `https` is built in), a host, no user name or
/// password (they would be shown in every list), no fragment, at most `URL_BYTES_MAX` bytes.
pub fn parse_target(url: &str, https_supported: bool) -> Result<Target, BadUrl> {
    if url.len() > URL_BYTES_MAX {
        return Err(BadUrl(format!("is longer than {URL_BYTES_MAX} bytes")));
    }
    let parsed = Url::parse(url).map_err(|e| BadUrl(format!("is not a URL: {e}")))?;
    match parsed.scheme() {
        "http" => {}
        "https" if https_supported => {}
        other => return Err(BadUrl(format!("scheme {other:?} is not http or https"))),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(BadUrl("must not carry a user name or password".into()));
    }
    if parsed.fragment().is_some() {
        return Err(BadUrl("must not have a fragment".into()));
    }
    let host = match parsed.host_str() {
        Some(host) if !host.is_empty() => host,
        _ => return Err(BadUrl("has no host".into())),
    };
    // An IPv6 literal is written in brackets.
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    Ok(Target {
        url: parsed,
        literal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> Option<Internal> {
        check(text.parse().unwrap(), false).err().map(|r| r.class)
    }

    #[test]
    fn internal_addresses_are_refused_by_default() {
        for (address, class) in [
            ("127.0.0.1", Internal::Loopback),
            ("127.8.9.10", Internal::Loopback),
            ("::1", Internal::Loopback),
            ("0.0.0.0", Internal::Unspecified),
            ("::", Internal::Unspecified),
            ("10.1.2.3", Internal::Private),
            ("172.16.0.1", Internal::Private),
            ("172.31.255.255", Internal::Private),
            ("192.168.1.1", Internal::Private),
            ("169.254.1.1", Internal::LinkLocal),
            ("fe80::1", Internal::LinkLocal),
            ("fc00::1", Internal::UniqueLocal),
            ("fd12:3456::1", Internal::UniqueLocal),
            ("100.64.0.1", Internal::SharedCgnat),
            ("100.127.255.254", Internal::SharedCgnat),
            ("169.254.169.254", Internal::Metadata),
            ("fd00:ec2::254", Internal::Metadata),
            ("224.0.0.1", Internal::NotUnicast),
            ("255.255.255.255", Internal::NotUnicast),
            ("ff02::1", Internal::NotUnicast),
        ] {
            assert_eq!(refused(address), Some(class), "{address}");
        }
    }

    #[test]
    fn ipv4_written_as_ipv6_is_judged_as_ipv4() {
        assert_eq!(refused("::ffff:127.0.0.1"), Some(Internal::Loopback));
        assert_eq!(refused("::ffff:169.254.169.254"), Some(Internal::Metadata));
        assert_eq!(refused("64:ff9b::10.0.0.1"), Some(Internal::Private));
        assert_eq!(refused("::ffff:93.184.216.34"), None);
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "93.184.216.34",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "2606:2800:220:1::1",
        ] {
            assert_eq!(refused(address), None, "{address}");
        }
    }

    #[test]
    fn allow_private_opens_internal_networks_but_never_metadata() {
        for address in ["127.0.0.1", "::1", "10.0.0.1", "fd12::1", "100.64.0.1"] {
            assert!(check(address.parse().unwrap(), true).is_ok(), "{address}");
        }
        for address in ["169.254.169.254", "fd00:ec2::254", "224.0.0.1"] {
            assert!(check(address.parse().unwrap(), true).is_err(), "{address}");
        }
    }

    #[test]
    fn urls_need_http_a_host_and_no_credentials() {
        let target = parse_target("http://127.0.0.1:9/hook", false).unwrap();
        assert_eq!(target.literal, Some("127.0.0.1".parse().unwrap()));
        let target = parse_target("http://[::1]:9/hook", false).unwrap();
        assert_eq!(target.literal, Some("::1".parse().unwrap()));
        assert_eq!(
            parse_target("http://hooks.example/x", false)
                .unwrap()
                .literal,
            None
        );
        assert!(parse_target("https://hooks.example/x", true).is_ok());
        // Other spellings of an IPv4 address are read as the address.
        for spelled in [
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
        ] {
            let target = parse_target(spelled, false).unwrap();
            assert_eq!(
                target.literal,
                Some("127.0.0.1".parse().unwrap()),
                "{spelled}"
            );
        }
        for bad in [
            "https://hooks.example/x",
            "ftp://hooks.example/x",
            "file:///etc/passwd",
            "http://user:pw@hooks.example/",
            "http://hooks.example/#f",
            "not a url",
            "http://",
        ] {
            assert!(parse_target(bad, false).is_err(), "{bad}");
        }
        let long = format!("http://hooks.example/{}", "a".repeat(URL_BYTES_MAX));
        assert!(parse_target(&long, true).is_err());
    }
}
