//! Where the relay listens, what one request may hold, and what the webhook listener's
//! connections may hold and for how long: it faces the internet, so every connection is bounded
//! in number, time and memory.

use std::{net::SocketAddr, time::Duration};

use bytesize::ByteSize;

use super::ConfigError;

/// The largest `--max-body` accepted: bodies are held in memory whole.
const MAX_BODY_CEILING: ByteSize = ByteSize::mib(64);

/// hyper's smallest HTTP/1 read buffer (it panics below it), which `--max-request-head` sizes.
const MIN_REQUEST_HEAD: ByteSize = ByteSize::kib(8);
/// Above this a connection's buffer is no longer a bound worth the name.
const MAX_REQUEST_HEAD: ByteSize = ByteSize::mib(1);

/// The two listeners and the bounds of one webhook request.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Listeners")]
pub struct Listeners {
    /// Address of the webhook ingress (HTTP/1.1 and h2c). `[::]` listens on IPv6 and IPv4
    /// (dual stack), and falls back to `0.0.0.0` where IPv6 is off.
    #[arg(long, env = "BP_RELAY_LISTEN", default_value = "[::]:8080")]
    pub listen: SocketAddr,

    /// Address of the admin listener: /metrics, /healthz, /readyz.
    #[arg(long, env = "BP_RELAY_ADMIN_LISTEN", default_value = "[::]:9090")]
    pub admin_listen: SocketAddr,

    /// Largest accepted request body; larger requests get 413 before the body is read.
    #[arg(long, env = "BP_RELAY_MAX_BODY", default_value = "1MiB", value_parser = super::parse_size)]
    pub max_body: ByteSize,

    /// Requests handled at once; more are answered 503 with Retry-After (memory bound).
    #[arg(long, env = "BP_RELAY_MAX_INFLIGHT", default_value_t = 1024)]
    pub max_inflight: usize,

    /// Request body bytes held in memory at once, across all requests; a request whose next
    /// bytes do not fit is answered 503 with Retry-After. At least twice --max-body (a body is
    /// held twice while its pieces are joined).
    #[arg(long, env = "BP_RELAY_MAX_INFLIGHT_BYTES", default_value = "64MiB", value_parser = super::parse_size)]
    pub max_inflight_bytes: ByteSize,

    /// Open connections on the webhook listener; beyond it, new connections wait in the kernel's
    /// accept backlog until one closes.
    #[arg(long, env = "BP_RELAY_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Time a connection has to deliver a complete request head: from its accept (this also
    /// bounds the HTTP/2 preface), or from the first byte of a keep-alive connection's next
    /// request. Then it is closed.
    #[arg(long, env = "BP_RELAY_REQUEST_HEAD_TIMEOUT", default_value = "10s", value_parser = super::parse_duration)]
    pub request_head_timeout: Duration,

    /// Time a keep-alive connection (HTTP/1 or HTTP/2) may stay open without a request in
    /// flight. Longer than the load balancer's own idle timeout, so that the balancer closes first.
    #[arg(long, env = "BP_RELAY_IDLE_TIMEOUT", default_value = "75s", value_parser = super::parse_duration)]
    pub idle_timeout: Duration,

    /// Interval of HTTP/2 keep-alive pings on a connection that sent nothing meanwhile.
    #[arg(long, env = "BP_RELAY_HTTP2_PING_INTERVAL", default_value = "30s", value_parser = super::parse_duration)]
    pub http2_ping_interval: Duration,

    /// Time an HTTP/2 peer has to answer a keep-alive ping before its connection is closed.
    #[arg(long, env = "BP_RELAY_HTTP2_PING_TIMEOUT", default_value = "10s", value_parser = super::parse_duration)]
    pub http2_ping_timeout: Duration,

    /// Largest request head (request line and headers; on HTTP/2 the header list), and the
    /// size of an HTTP/1 connection's read buffer, which holds a head whole. Larger heads are
    /// refused (HTTP/1: 431).
    #[arg(long, env = "BP_RELAY_MAX_REQUEST_HEAD", default_value = "16KiB", value_parser = super::parse_size)]
    pub max_request_head: ByteSize,
}

impl Listeners {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body.as_u64() == 0 || self.max_body > MAX_BODY_CEILING {
            return Err(ConfigError::new(format!(
                "--max-body must be between 1B and {MAX_BODY_CEILING}, got {}",
                self.max_body
            )));
        }
        if self.max_inflight == 0 {
            return Err(ConfigError::new("--max-inflight must be at least 1"));
        }
        if self.max_inflight_bytes.as_u64() < 2 * self.max_body.as_u64() {
            return Err(ConfigError::new(format!(
                "--max-inflight-bytes must be at least twice --max-body ({}), or the largest body never fits",
                ByteSize::b(2 * self.max_body.as_u64())
            )));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::new("--max-connections must be at least 1"));
        }
        self.validate_deadlines()?;
        if self.max_request_head < MIN_REQUEST_HEAD || self.max_request_head > MAX_REQUEST_HEAD {
            return Err(ConfigError::new(format!(
                "--max-request-head must be between {MIN_REQUEST_HEAD} and {MAX_REQUEST_HEAD}, got {}",
                self.max_request_head
            )));
        }
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err(ConfigError::new(format!(
                "--listen and --admin-listen must differ, both are {}",
                self.listen
            )));
        }
        Ok(())
    }

    fn validate_deadlines(&self) -> Result<(), ConfigError> {
        for (flag, value) in [
            ("--request-head-timeout", self.request_head_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--http2-ping-interval", self.http2_ping_interval),
            ("--http2-ping-timeout", self.http2_ping_timeout),
        ] {
            if value < Duration::from_millis(100) {
                return Err(ConfigError::new(format!(
                    "{flag} must be at least 100ms, got {}",
                    humantime::format_duration(value)
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::Config;

    fn parse(extra: &[&str]) -> Result<Listeners, String> {
        let args = [
            "bp-relay",
            "--kafka-brokers",
            "127.0.0.1:9092",
            "--signing-secrets",
            "s",
        ]
        .iter()
        .chain(extra);
        let config = Config::try_parse_from(args).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config.listeners)
    }

    #[test]
    fn the_connection_and_memory_bounds_default_to_the_documented_values() {
        let listeners = parse(&[]).unwrap();
        assert_eq!(listeners.max_connections, 4096);
        assert_eq!(listeners.max_inflight_bytes, ByteSize::mib(64));
        assert_eq!(listeners.request_head_timeout, Duration::from_secs(10));
        assert_eq!(listeners.idle_timeout, Duration::from_secs(75));
        assert_eq!(listeners.http2_ping_interval, Duration::from_secs(30));
        assert_eq!(listeners.http2_ping_timeout, Duration::from_secs(10));
        assert_eq!(listeners.max_request_head, ByteSize::kib(16));
    }

    #[test]
    fn each_bound_refuses_values_that_would_not_bound_anything_and_names_its_flag() {
        for (args, message) in [
            (
                &["--max-connections", "0"][..],
                "--max-connections must be at least 1",
            ),
            (
                &["--max-inflight-bytes", "1MiB"],
                "--max-inflight-bytes must be at least twice --max-body (2.0 MiB)",
            ),
            (
                &["--request-head-timeout", "0s"],
                "--request-head-timeout must be at least 100ms",
            ),
            (
                &["--idle-timeout", "10ms"],
                "--idle-timeout must be at least 100ms",
            ),
            (
                &["--http2-ping-timeout", "0s"],
                "--http2-ping-timeout must be at least 100ms",
            ),
            (
                &["--max-request-head", "4KiB"],
                "--max-request-head must be between 8.0 KiB and 1.0 MiB",
            ),
            (
                &["--max-request-head", "2MiB"],
                "--max-request-head must be between 8.0 KiB and 1.0 MiB",
            ),
        ] {
            let error = parse(args).unwrap_err();
            assert!(error.starts_with(message), "{args:?}: {error}");
        }
        assert!(parse(&["--max-body", "4MiB", "--max-inflight-bytes", "8MiB"]).is_ok());
    }
}
