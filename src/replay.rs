//! The replay guard: Authvia's signature does not cover the body, so a captured set of
//! X-AUTHVIA-* headers could carry another body inside the timestamp window. The guard
//! remembers which body digest each signing (value, timestamp, route) came with: the same
//! signing with the same body is a redelivery and passes; with another body it is refused.
//!
//! Two stores: [`MemoryGuard`] in the process (the default, for one replica), and
//! [`RedisGuard`] shared by every replica and surviving restarts (`--replay-store`). A shared
//! store that cannot answer fails closed: the request is refused with 503, never let through
//! unguarded.

mod memory;
mod redis;

use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

pub use memory::{GuardMetrics, MemoryGuard};
pub use redis::{RedisGuard, StoreError};

/// SHA-256 of a body.
pub type Digest = [u8; 32];

/// Why the guard did not admit a body.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The signing was already used with another body.
    #[error("signing already used with another body")]
    Replayed,
    /// The shared store did not answer in time: the body cannot be checked.
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

/// One signing, as the guard keys it.
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    /// X-AUTHVIA-VALUE.
    pub value: &'a str,
    /// X-AUTHVIA-TIMESTAMP, Unix seconds.
    pub timestamp: i64,
    /// The route it came on: the same headers on the other route are another signing.
    pub route: &'a str,
    /// Unix seconds after which the verifier refuses this timestamp anyway: the guard need
    /// not remember it longer.
    pub expires_at: i64,
}

impl Signing<'_> {
    /// A fixed-size name for the signing: 128 bits of SHA-256, so an entry's size does not
    /// depend on the header's length and two signings do not collide by chance.
    fn fingerprint(&self) -> u128 {
        let mut hasher = Sha256::new();
        // The separators keep ("a1", 2) and ("a", 12) apart.
        hasher.update(self.value.as_bytes());
        hasher.update([0]);
        hasher.update(self.timestamp.to_be_bytes());
        hasher.update([0]);
        hasher.update(self.route.as_bytes());
        first_128_bits(&hasher.finalize().into())
    }
}

/// Where signings are remembered.
pub enum ReplayGuard {
    /// In this process.
    Memory(MemoryGuard),
    /// In Redis, shared by every replica (and by the readiness probe).
    Shared(Arc<RedisGuard>),
}

impl ReplayGuard {
    /// Records `signing` with the body `digest`, or refuses it when it was seen with another
    /// body. Waits for a shared store until `deadline` at most.
    ///
    /// # Errors
    /// [`ReplayError::Replayed`]; [`ReplayError::Unavailable`] when the shared store did not answer.
    pub async fn check(
        &self,
        signing: Signing<'_>,
        digest: Digest,
        deadline: Instant,
    ) -> Result<(), ReplayError> {
        let body = first_128_bits(&digest);
        let remembered = match self {
            Self::Memory(guard) => guard.remember(signing, body),
            Self::Shared(guard) => guard.remember(signing, body, deadline).await?,
        };
        if remembered == body {
            Ok(())
        } else {
            Err(ReplayError::Replayed)
        }
    }
}

/// The first 128 bits of a SHA-256: forging a second body with the same 128 bits is as out of
/// reach as with all 256, at half the memory.
fn first_128_bits(hash: &[u8; 32]) -> u128 {
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash[..16]);
    u128::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus::Registry;

    use super::*;

    const AT: i64 = 1_767_225_600;

    fn signing<'a>(value: &'a str, timestamp: i64, route: &'a str) -> Signing<'a> {
        Signing {
            value,
            timestamp,
            route,
            expires_at: timestamp + 300,
        }
    }

    fn guard() -> ReplayGuard {
        ReplayGuard::Memory(MemoryGuard::new(
            100,
            GuardMetrics::register(&Registry::new()).unwrap(),
        ))
    }

    async fn check(guard: &ReplayGuard, signing: Signing<'_>, body: u8) -> Result<(), ReplayError> {
        guard
            .check(signing, [body; 32], Instant::now() + Duration::from_secs(1))
            .await
    }

    #[tokio::test]
    async fn same_signing_with_same_body_is_a_redelivery() {
        let guard = guard();
        check(&guard, signing("v", AT, "bp"), 1).await.unwrap();
        check(&guard, signing("v", AT, "bp"), 1).await.unwrap();
    }

    #[tokio::test]
    async fn same_signing_with_another_body_is_refused() {
        let guard = guard();
        check(&guard, signing("v", AT, "bp"), 1).await.unwrap();
        assert!(matches!(
            check(&guard, signing("v", AT, "bp"), 2).await,
            Err(ReplayError::Replayed)
        ));
        check(&guard, signing("w", AT, "bp"), 2).await.unwrap();
        check(&guard, signing("v", AT + 1, "bp"), 2)
            .await
            .expect("another timestamp is another signing");
    }

    #[tokio::test]
    async fn the_same_headers_on_the_other_route_are_another_signing() {
        let guard = guard();
        check(&guard, signing("v", AT, "business_processes"), 1)
            .await
            .unwrap();
        check(&guard, signing("v", AT, "business_process_actions"), 2)
            .await
            .expect("not a redelivery of the other route's");
    }
}
