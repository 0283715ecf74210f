//! Who the dashboard answers. `sluice dashboard` reads a deployment with the operator's
//! AWS credentials, so the page and its API must not be readable by other sites open in
//! the same browser, nor by other machines unless asked for:
//!
//! - **Host header.** A DNS-rebinding page (`attacker.example`, re-resolved to
//!   127.0.0.1) is same-origin with itself, so the browser lets it read what this server
//!   answers; only the `Host` header it sends gives it away. Requests are answered only
//!   when `Host` names `localhost`, `127.0.0.1`, `[::1]`, the address listened on, or a
//!   name given with `--allow-host`; any port (an `ssh -L` tunnel changes it, the name is
//!   what rebinding changes). Listening on every address (`0.0.0.0`, `::`), the
//!   machine's own addresses are not known here, so any IP-literal host is answered
//!   (rebinding needs a name) and the token guards the rest.
//! - **No Host header.** HTTP/1.1 requires one (RFC 9112 §3.2: 400). An HTTP/1.0
//!   request without one is answered: browsers always send `Host`, so it cannot come
//!   from a rebinding page, and the token still applies.
//! - **Token.** With `--token`, or on a non-loopback address (a random one is made and
//!   printed in the URL once), every request needs `?token=TOKEN` (the page's URL) or
//!   `Authorization: Bearer TOKEN` (the page's own API calls send that).

use std::net::IpAddr;

use super::http::{Gate, Request, Response};

/// The query parameter carrying the token; it is removed before routing, so the
/// query API never sees it.
pub const TOKEN_PARAM: &str = "token";

/// Host names always answered, besides the address listened on.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The checks every request passes before it is routed.
#[derive(Debug, Clone)]
pub struct Access {
    /// Host names answered (lowercase, IPv6 in brackets, no port).
    names: Vec<String>,
    /// Listening on every address: any IP-literal host is answered too.
    any_ip: bool,
    token: Option<String>,
}

impl Access {
    /// For a server listening on `bind`, also answering the `allowed` names, requiring
    /// `token` when there is one.
    pub fn new(bind: IpAddr, allowed: &[String], token: Option<String>) -> Self {
        let mut names: Vec<String> = LOOPBACK_NAMES.iter().map(|n| (*n).to_owned()).collect();
        names.push(host_of_ip(bind));
        names.extend(allowed.iter().map(|n| n.to_ascii_lowercase()));
        names.sort();
        names.dedup();
        Access {
            names,
            any_ip: bind.is_unspecified(),
            token,
        }
    }

    /// Refuses a request from a name not allowed (403), without a Host header in
    /// HTTP/1.1 or with several (400), or without the token (401). Removes the
    /// token's query parameter.
    pub fn check(&self, req: &mut Request) -> Result<(), Response> {
        self.check_host(req)?;
        let Some(token) = &self.token else {
            return Ok(());
        };
        let bearer = req.header("authorization").find_map(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        let given = bearer.or_else(|| req.param(TOKEN_PARAM));
        let ok = given.is_some_and(|g| same(g.as_bytes(), token.as_bytes()));
        let given = given.is_some();
        req.params.retain(|(k, _)| k != TOKEN_PARAM);
        match (ok, given) {
            (true, _) => Ok(()),
            (false, false) => Err(Response::text(
                401,
                "this dashboard needs its token: open the URL sluice printed (…/?token=…) or send Authorization: Bearer TOKEN",
            )
            .with_header("WWW-Authenticate", "Bearer")),
            (false, true) => Err(Response::text(401, "wrong token")
                .with_header("WWW-Authenticate", "Bearer error=\"invalid_token\"")),
        }
    }

    fn check_host(&self, req: &Request) -> Result<(), Response> {
        let hosts: Vec<&str> = req.header("host").collect();
        let host = match hosts.as_slice() {
            [host] => *host,
            [] if req.version == "HTTP/1.0" => return Ok(()),
            [] => {
                return Err(Response::text(
                    400,
                    "no Host header (HTTP/1.1 requires one)",
                ));
            }
            _ => return Err(Response::text(400, "more than one Host header")),
        };
        let name = host_name(host)
            .ok_or_else(|| Response::text(400, &format!("Host {host:?} is not NAME[:PORT]")))?;
        if self.names.contains(&name) || (self.any_ip && is_ip_literal(&name)) {
            return Ok(());
        }
        Err(Response::text(
            403,
            &format!(
                "Host {host:?} is not allowed: this dashboard answers {} (add a name with --allow-host NAME)",
                self.names.join(", ")
            ),
        ))
    }
}

/// An address as a Host header names it (IPv6 in brackets).
fn host_of_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// The name of a Host header value, lowercase, without its port: `None` unless it is
/// `NAME`, `NAME:PORT`, `[IPV6]` or `[IPV6]:PORT`.
pub fn host_name(host: &str) -> Option<String> {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            inside.parse::<std::net::Ipv6Addr>().ok()?;
            (&host[..inside.len() + 2], after.strip_prefix(':'))
        }
        None => match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok());
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._[]:".contains(c));
    (port_ok && name_ok).then(|| name.to_ascii_lowercase())
}

/// An IPv4 address or a bracketed IPv6 one: a name DNS cannot rebind.
fn is_ip_literal(name: &str) -> bool {
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .is_some_and(|n| n.parse::<std::net::Ipv6Addr>().is_ok())
}

/// Compares in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `--allow-host NAME`: a host name or address as a browser's Host header names it
/// (a port, if given, is dropped: every port is answered).
pub fn parse_allowed_host(s: &str) -> Result<String, String> {
    host_name(s).ok_or_else(|| {
        format!("{s:?} is not a host name (NAME, NAME:PORT or [IPV6]; no scheme or path)")
    })
}

/// `--token TOKEN`: printed in a URL, so letters, digits and `-._~` only.
pub fn parse_token(s: &str) -> Result<String, String> {
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    {
        return Err(format!(
            "{s:?} is not a token: use letters, digits and - . _ ~ (it goes in a URL)"
        ));
    }
    Ok(s.to_owned())
}

/// A random token: 128 bits from the OS (`/dev/urandom`), in hex.
pub fn random_token() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Gate for Access {
    fn check(&self, req: &mut Request) -> Result<(), Response> {
        Access::check(self, req)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::commands::dashboard::http::parse_head;

    fn req(head: &str) -> Request {
        parse_head(format!("{head}\r\n\r\n").as_bytes()).expect("request")
    }

    fn status(access: &Access, head: &str) -> u16 {
        access.check(&mut req(head)).err().map_or(200, |r| r.status)
    }

    #[test]
    fn a_loopback_dashboard_answers_loopback_names_and_allowed_ones_only() {
        let a = Access::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &["dash.internal".into()],
            None,
        );
        for ok in [
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080",
            "GET / HTTP/1.1\r\nHost: 127.0.0.1",
            "GET / HTTP/1.1\r\nHost: localhost:9000",
            "GET / HTTP/1.1\r\nHost: LocalHost",
            "GET / HTTP/1.1\r\nHost: [::1]:8080",
            "GET / HTTP/1.1\r\nhost: dash.internal:443",
            // HTTP/1.0 without Host: no browser sends that.
            "GET / HTTP/1.0",
        ] {
            assert_eq!(status(&a, ok), 200, "{ok}");
        }
        for (refused, want) in [
            ("GET /api/overview HTTP/1.1\r\nHost: attacker.example", 403),
            ("GET / HTTP/1.1\r\nHost: attacker.example:8080", 403),
            ("GET / HTTP/1.1\r\nHost: localhost.attacker.example", 403),
            ("GET / HTTP/1.1\r\nHost: 10.0.0.7:8080", 403),
            ("GET / HTTP/1.1\r\nHost: 127.0.0.1:80:80", 400),
            ("GET / HTTP/1.1\r\nHost: a/b", 400),
            (
                "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: attacker.example",
                400,
            ),
            ("GET / HTTP/1.1", 400),
        ] {
            assert_eq!(status(&a, refused), want, "{refused}");
        }
        let refusal = a
            .check(&mut req("GET / HTTP/1.1\r\nHost: attacker.example"))
            .expect_err("refused");
        let text = String::from_utf8_lossy(&refusal.body).into_owned();
        assert!(
            text.contains("\"attacker.example\"") && text.contains("--allow-host"),
            "{text}"
        );
        assert_eq!(refusal.content_type, "text/plain; charset=utf-8");
    }

    #[test]
    fn the_address_listened_on_is_answered_and_every_address_takes_ip_literals() {
        let lan = Access::new("192.168.1.5".parse().expect("ip"), &[], None);
        assert_eq!(
            status(&lan, "GET / HTTP/1.1\r\nHost: 192.168.1.5:8080"),
            200
        );
        assert_eq!(
            status(&lan, "GET / HTTP/1.1\r\nHost: 192.168.1.6:8080"),
            403
        );
        let v6 = Access::new(IpAddr::V6(Ipv6Addr::LOCALHOST), &[], None);
        assert_eq!(status(&v6, "GET / HTTP/1.1\r\nHost: [::1]:1"), 200);
        let every = Access::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), &[], None);
        for ok in ["0.0.0.0:8080", "192.168.1.5:8080", "[fe80::1]:8080"] {
            assert_eq!(
                status(&every, &format!("GET / HTTP/1.1\r\nHost: {ok}")),
                200,
                "{ok}"
            );
        }
        assert_eq!(
            status(&every, "GET / HTTP/1.1\r\nHost: evil.example:8080"),
            403
        );
    }

    #[test]
    fn a_token_is_required_as_a_parameter_or_a_bearer_and_then_removed() {
        let a = Access::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            &[],
            Some("s3cret".into()),
        );
        let host = "Host: 10.0.0.1:8080";
        let mut page = req(&format!("GET /?token=s3cret HTTP/1.1\r\n{host}"));
        assert!(a.check(&mut page).is_ok());
        assert!(
            page.params.is_empty(),
            "the token is not passed on: {page:?}"
        );
        let mut api = req(&format!(
            "GET /api/alerts?limit=5 HTTP/1.1\r\n{host}\r\nAuthorization: Bearer s3cret"
        ));
        assert!(a.check(&mut api).is_ok());
        assert_eq!(api.params, vec![("limit".to_owned(), "5".to_owned())]);
        for refused in [
            format!("GET / HTTP/1.1\r\n{host}"),
            format!("GET /?token=s3creT HTTP/1.1\r\n{host}"),
            format!("GET /api/overview HTTP/1.1\r\n{host}\r\nAuthorization: Bearer s3cre"),
            format!(
                "GET /api/overview?token=s3cret HTTP/1.1\r\n{host}\r\nAuthorization: Bearer nope"
            ),
            // The token does not make a foreign Host acceptable.
            "GET /?token=s3cret HTTP/1.1\r\nHost: evil.example".to_owned(),
        ] {
            let want = if refused.contains("evil") { 403 } else { 401 };
            assert_eq!(status(&a, &refused), want, "{refused}");
        }
        let missing = a
            .check(&mut req(&format!("GET / HTTP/1.1\r\n{host}")))
            .expect_err("401");
        assert_eq!(
            missing.headers,
            vec![("WWW-Authenticate", "Bearer".to_owned())]
        );
    }

    #[test]
    fn flag_values_are_checked_and_tokens_are_random() {
        assert_eq!(
            parse_allowed_host("Dash.Internal:8080"),
            Ok("dash.internal".into())
        );
        assert_eq!(parse_allowed_host("[::1]"), Ok("[::1]".into()));
        let bad = parse_allowed_host("http://dash.internal/").expect_err("scheme");
        assert!(bad.contains("\"http://dash.internal/\""), "{bad}");
        assert!(parse_token("a b").expect_err("space").contains("\"a b\""));
        assert!(parse_token("").is_err());
        assert_eq!(parse_token("A-z_0.9~"), Ok("A-z_0.9~".into()));
        let (a, b) = (
            random_token().expect("token"),
            random_token().expect("token"),
        );
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(parse_token(&a).is_ok());
    }
}
