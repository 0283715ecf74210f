//! Pieces shared by the commands that talk to a deployment (`setup`, `produce`,
//! `query`, `alerts`, `dead-letters`): errors that say what to do, and argument parsers.

use crate::connect::Connection;

/// An adapter error as one line for the user: what was being done, what to do about
/// it when the cause is recognisable (a missing stream or table: `sluice setup`; an
/// endpoint that does not answer), then the error itself. The adapters' messages
/// already carry the service's error code and message, so the SDK's own cause chain
/// (which repeats them) is left out of the line. A cause that no wait fixes (no
/// credentials, a refused connection: [`sluice_aws::classify::Misconfiguration`]) is
/// the whole line: what was being done does not matter then.
pub fn explain<E>(err: E, doing: &str, conn: &Connection) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    if let Some(problem) = sluice_aws::classify::misconfiguration(&err) {
        return anyhow::Error::new(problem);
    }
    let text = err.to_string();
    let hint = if text.contains("ResourceNotFoundException") {
        format!(
            " (not found: create the streams and tables of prefix {:?} with `{}`)",
            conn.prefix,
            setup_command(conn)
        )
    } else if text.to_ascii_lowercase().contains("dispatch failure") {
        format!(
            " (no answer from {}: is it running? set --endpoint URL or AWS_ENDPOINT_URL)",
            endpoint_description(conn)
        )
    } else {
        String::new()
    };
    // The service's message may quote input (a key, a stream name): printed escaped.
    anyhow::anyhow!("{doing}{hint}: {}", crate::output::terminal_safe(&text))
}

/// The `sluice setup` command line for this connection.
pub fn setup_command(conn: &Connection) -> String {
    let mut cmd = String::from("sluice setup");
    if conn.prefix != sluice_core::resources::DEFAULT_PREFIX {
        cmd.push_str(&format!(" --prefix {}", conn.prefix));
    }
    if let Some(e) = &conn.endpoint {
        cmd.push_str(&format!(" --endpoint {e}"));
    }
    cmd
}

fn endpoint_description(conn: &Connection) -> String {
    if let Some(e) = &conn.endpoint {
        return format!("endpoint {e}");
    }
    let configured: Vec<String> = [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_KINESIS",
        "AWS_ENDPOINT_URL_DYNAMODB",
    ]
    .into_iter()
    .filter_map(|v| {
        std::env::var(v)
            .ok()
            .filter(|s| !s.is_empty())
            .map(|s| format!("{v}={s}"))
    })
    .collect();
    if configured.is_empty() {
        "the AWS endpoint".to_owned()
    } else {
        configured.join(", ")
    }
}

/// A command-line time: RFC 3339 or epoch milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    sluice_core::time::parse_time_arg(s)
        .ok_or_else(|| format!("{s:?} is neither RFC 3339 nor epoch milliseconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(prefix: &str, endpoint: Option<&str>) -> Connection {
        Connection {
            endpoint: endpoint.map(str::to_owned),
            prefix: prefix.to_owned(),
            template: None,
        }
    }

    #[test]
    fn missing_resources_point_at_setup() {
        let err = std::io::Error::other(
            "kinesis PutRecords failed: stream \"t-raw\": ResourceNotFoundException: gone",
        );
        let e = explain(
            err,
            "writing to stream \"t-raw\"",
            &conn("t", Some("http://x:1")),
        );
        let text = format!("{e:#}");
        assert!(
            text.contains("sluice setup --prefix t --endpoint http://x:1"),
            "{text}"
        );
        assert!(text.contains("ResourceNotFoundException: gone"), "{text}");
        let plain = explain(
            std::io::Error::other("AccessDenied"),
            "reading",
            &conn("sluice", None),
        );
        assert_eq!(format!("{plain:#}"), "reading: AccessDenied");
        let down = explain(
            std::io::Error::other("dynamodb Scan failed: dispatch failure: connection refused"),
            "reading",
            &conn("sluice", Some("http://127.0.0.1:9")),
        );
        assert!(
            format!("{down:#}").contains("no answer from endpoint http://127.0.0.1:9"),
            "{down:#}"
        );
        let anonymous = explain(
            sluice_aws::classify::Misconfiguration::NoCredentials,
            "reading",
            &conn("sluice", None),
        );
        assert_eq!(
            format!("{anonymous:#}"),
            "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
        );
        assert_eq!(setup_command(&conn("sluice", None)), "sluice setup");
    }

    #[test]
    fn service_messages_are_printed_escaped() {
        let e = explain(
            std::io::Error::other("ValidationException: key \"\u{1b}]0;pwned\u{7}\r\" is bad"),
            "reading",
            &conn("sluice", None),
        );
        let text = format!("{e:#}");
        assert!(
            !text.chars().any(crate::output::is_terminal_unsafe),
            "{text:?}"
        );
        assert!(
            text.contains(r#"key "\x1b]0;pwned\x07\r" is bad"#),
            "{text}"
        );
    }

    #[test]
    fn times_parse_as_rfc3339_or_epoch_ms() {
        assert_eq!(parse_time("2026-01-01T00:01:00Z"), Ok(1_767_225_660_000));
        assert_eq!(parse_time("1767225660000"), Ok(1_767_225_660_000));
        assert!(parse_time("yesterday").is_err());
    }
}
