//! SSRF guard for webhook endpoints: no loopback, private, link-local,
//! unique-local, CGNAT, metadata or otherwise non-public address, checked at
//! registration on the URL and its resolved addresses, and again at send
//! time on the addresses the name resolves to then (a name may be re-pointed
//! after registration). `WEBHOOK_ALLOW_PRIVATE=true` turns it off.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Time allowed for a name lookup at registration.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// True for any address a webhook must not reach.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_forbidden(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return v4_forbidden(Ipv4Addr::new(a, b, c, d));
            }
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local, fd00:ec2::254 included
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0 && s[1..6] == [0, 0, 0, 0, 0]) // IPv4-compatible, ::/96
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        }
    }
}

fn v4_forbidden(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, the metadata address included
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240 // reserved
}

/// Why a URL may not be registered, in words for a 422.
pub async fn check_url(url: &Url, allow_private: bool) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err("expected an http or https URL".into());
    }
    let Some(host) = url.host() else {
        return Err("expected a URL with a host".into());
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not accepted".into());
    }
    if allow_private {
        return Ok(());
    }
    let refuse = |ip: IpAddr| {
        format!(
            "{ip} is a loopback, private or otherwise non-public address \
             (set WEBHOOK_ALLOW_PRIVATE=true to allow)"
        )
    };
    match host {
        Host::Ipv4(ip) if is_forbidden(ip.into()) => Err(refuse(ip.into())),
        Host::Ipv6(ip) if is_forbidden(ip.into()) => Err(refuse(ip.into())),
        Host::Ipv4(_) | Host::Ipv6(_) => Ok(()),
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return Err(format!(
                    "{name} is a loopback name (set WEBHOOK_ALLOW_PRIVATE=true to allow)"
                ));
            }
            let port = url.port_or_known_default().unwrap_or(443);
            // A name that does not resolve yet is accepted: it is checked
            // again on every send.
            let resolved =
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port))).await;
            if let Ok(Ok(addrs)) = resolved {
                for addr in addrs {
                    if is_forbidden(addr.ip()) {
                        return Err(refuse(addr.ip()));
                    }
                }
            }
            Ok(())
        }
    }
}

/// Is this URL's host an address literal the guard refuses? (Names go
/// through [`GuardedResolver`]; literals never reach a resolver.)
pub fn literal_is_forbidden(url: &Url) -> Option<IpAddr> {
    let ip: IpAddr = match url.host()? {
        Host::Ipv4(ip) => ip.into(),
        Host::Ipv6(ip) => ip.into(),
        Host::Domain(_) => return None,
    };
    is_forbidden(ip).then_some(ip)
}

/// The resolver of the webhook HTTP client: resolves a name, drops every
/// forbidden address, and lets the client connect only to what is left, so
/// the address checked is the address used.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| allow_private || !is_forbidden(a.ip()))
                .collect();
            if allowed.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> = if all.is_empty() {
                    format!("{host} does not resolve").into()
                } else {
                    format!(
                        "{host} resolves only to loopback, private or non-public addresses; refused"
                    )
                    .into()
                };
                return Err(error);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(
                is_forbidden(ip.parse().unwrap()),
                "{ip} should be forbidden"
            );
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }

    #[tokio::test]
    async fn registration_refuses_private_urls_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/hook",
            "http://localhost/hook",
            "http://[::1]/",
            "http://169.254.169.254/latest",
            "http://[fd00:ec2::254]/",
        ] {
            let url: Url = url.parse().unwrap();
            assert!(check_url(&url, false).await.is_err(), "{url}");
            assert!(check_url(&url, true).await.is_ok(), "{url}");
        }
        assert!(
            check_url(&"ftp://example.com/".parse().unwrap(), true)
                .await
                .is_err()
        );
        assert!(
            check_url(&"https://93.184.216.34/hook".parse().unwrap(), false)
                .await
                .is_ok()
        );
    }
}
