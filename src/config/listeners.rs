//! Where the relay listens and what one request may hold.

use std::net::SocketAddr;

use bytesize::ByteSize;

use super::ConfigError;

/// The largest `--max-body` accepted: bodies are held in memory whole.
const MAX_BODY_CEILING: ByteSize = ByteSize::mib(64);

/// The two listeners and the bounds of one webhook request.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Listeners")]
pub struct Listeners {
    /// Address of the webhook ingress (HTTP/1.1 and h2c). `[::]` listens on IPv6 and IPv4
    /// (dual stack), and falls back to `0.0.0.0` where IPv6 is off.
    #[arg(long, env = "BP_RELAY_LISTEN", default_value = "[::]:8080", global = true)]
    pub listen: SocketAddr,

    /// Address of the admin listener: /metrics, /healthz, /readyz.
    #[arg(long, env = "BP_RELAY_ADMIN_LISTEN", default_value = "[::]:9090", global = true)]
    pub admin_listen: SocketAddr,

    /// Largest accepted request body; larger requests get 413 before the body is read.
    #[arg(long, env = "BP_RELAY_MAX_BODY", default_value = "1MiB", value_parser = super::parse_size, global = true)]
    pub max_body: ByteSize,

    /// Requests handled at once; more are answered 503 with Retry-After (memory bound).
    #[arg(long, env = "BP_RELAY_MAX_INFLIGHT", default_value_t = 1024, global = true)]
    pub max_inflight: usize,
}

impl Listeners {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body.as_u64() == 0 || self.max_body > MAX_BODY_CEILING {
            return Err(ConfigError::new(format!("--max-body must be between 1B and {MAX_BODY_CEILING}, got {}", self.max_body)));
        }
        if self.max_inflight == 0 {
            return Err(ConfigError::new("--max-inflight must be at least 1"));
        }
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err(ConfigError::new(format!("--listen and --admin-listen must differ, both are {}", self.listen)));
        }
        Ok(())
    }
}
