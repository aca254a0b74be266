//! Listen addresses written the way Thanos flags take them (`--http-address`,
//! `--grpc-address`).

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};

use super::ServerError;

/// Parses `host:port` into the address to bind.
///
/// Accepts `0.0.0.0:10902`, `127.0.0.1:0`, `[::1]:10902`, a host name (`localhost:10902`,
/// resolved now; the first address wins) and `:10902`, which Go reads as "every interface".
/// `:port` binds `0.0.0.0`, the IPv4 wildcard, rather than Go's dual-stack `[::]`, so it also
/// works on hosts with IPv6 disabled; write `[::]:port` to get IPv6 too.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, ServerError> {
    let invalid = |reason: String| ServerError::InvalidListenAddr {
        addr: s.to_owned(),
        reason,
    };
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected host:port".into()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(format!("port {port:?} is not a number in 0..=65535")))?;
    if host.is_empty() {
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(invalid("IPv6 addresses need brackets: [addr]:port".into()));
    }
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| invalid(format!("cannot resolve {host:?}: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| invalid(format!("{host:?} resolves to no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thanos_style_addresses() {
        let ok = |s: &str| parse_listen_addr(s).unwrap().to_string();
        assert_eq!(ok("0.0.0.0:10902"), "0.0.0.0:10902");
        assert_eq!(ok(":10902"), "0.0.0.0:10902");
        assert_eq!(ok("127.0.0.1:0"), "127.0.0.1:0");
        assert_eq!(ok("[::1]:10901"), "[::1]:10901");
        assert_eq!(ok("[::]:10901"), "[::]:10901");
        assert!(parse_listen_addr("localhost:10902")
            .unwrap()
            .ip()
            .is_loopback());
    }

    #[test]
    fn bad_addresses_say_why() {
        for (s, why) in [
            ("10902", "host:port"),
            (":http", "not a number"),
            (":70000", "not a number"),
            ("127.0.0.1:", "not a number"),
            ("::1:10902", "brackets"),
        ] {
            let err = parse_listen_addr(s).unwrap_err().to_string();
            assert!(err.contains(why), "{s}: {err}");
            assert!(err.contains(&format!("{s:?}")), "{s}: {err}");
        }
    }
}
