//! The replay guard: Authvia's signature does not cover the body nor the route, so a captured
//! set of X-AUTHVIA-* headers could carry another body, or go to the other route, inside the
//! timestamp window. The guard binds each signing (value, timestamp) to the route and body it
//! first came with: the same signing on the same route with the same body is a redelivery and
//! passes; on another route or with another body it is refused. A captured signing buys at most
//! a duplicate of its own body on its own route.
//!
//! Two stores: [`MemoryGuard`] in the process (the default, for one replica), and
//! [`RedisGuard`] shared by every replica and surviving restarts (`--replay-store`). Both fail
//! closed: a shared store that cannot answer, or a memory guard full of signings still inside
//! the window, refuses the request with 503; a signing is never let through unguarded, nor
//! forgotten while it could still be admitted.

mod memory;
mod redis;

use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

pub use memory::{GuardFull, GuardMetrics, MemoryGuard};
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
    /// The in-memory guard holds only live signings: a new one cannot be remembered.
    #[error(transparent)]
    Full(#[from] GuardFull),
}

/// One signing, as the guard keys it: the route is not part of it, so the same headers on
/// the other route are the same signing (bound to the route it came with first).
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    /// X-AUTHVIA-VALUE.
    pub value: &'a str,
    /// X-AUTHVIA-TIMESTAMP, Unix seconds.
    pub timestamp: i64,
    /// Unix seconds from which no replica can admit this signing any more (the window's end,
    /// plus the longest a request may take, plus the clocks' skew): the guard must remember it
    /// until then, and need not longer.
    pub remember_until: i64,
}

impl Signing<'_> {
    /// A fixed-size name for the signing: 128 bits of SHA-256, so an entry's size does not
    /// depend on the header's length and two signings do not collide by chance.
    pub fn fingerprint(&self) -> u128 {
        let mut hasher = Sha256::new();
        // The separator keeps ("a1", 2) and ("a", 12) apart.
        hasher.update(self.value.as_bytes());
        hasher.update([0]);
        hasher.update(self.timestamp.to_be_bytes());
        first_128_bits(&hasher.finalize().into())
    }
}

/// What a signing is bound to: 128 bits of SHA-256 over the route and the body's digest.
pub type Binding = u128;

/// The binding of a body with SHA-256 `digest` that came on `route`.
pub fn binding(route: &str, digest: &Digest) -> Binding {
    let mut hasher = Sha256::new();
    // The route labels are fixed words without a 0 byte: the separator keeps them apart.
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(digest);
    first_128_bits(&hasher.finalize().into())
}

/// Where signings are remembered.
pub enum ReplayGuard {
    /// In this process.
    Memory(MemoryGuard),
    /// In Redis, shared by every replica (and by the readiness probe).
    Shared(Arc<RedisGuard>),
}

impl ReplayGuard {
    /// Records `signing` bound to a route and body (`bound`, see [`binding`]), or refuses it
    /// when it was seen on another route or with another body, at Unix second `now`. Waits for
    /// a shared store until `deadline` at most.
    ///
    /// # Errors
    /// [`ReplayError::Replayed`]; [`ReplayError::Unavailable`] when the shared store did not
    /// answer; [`ReplayError::Full`] when the memory guard has no room for a new signing.
    pub async fn check(
        &self,
        signing: Signing<'_>,
        bound: Binding,
        now: i64,
        deadline: Instant,
    ) -> Result<(), ReplayError> {
        let remembered = match self {
            Self::Memory(guard) => guard.remember(signing, bound, now)?,
            Self::Shared(guard) => guard.remember(signing, bound, deadline).await?,
        };
        if remembered == bound {
            Ok(())
        } else {
            Err(ReplayError::Replayed)
        }
    }
}

/// The first 128 bits of a SHA-256: forging a second body with the same 128 bits is as out of
/// reach as with all 256, at half the memory.
pub(crate) fn first_128_bits(hash: &[u8; 32]) -> u128 {
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
    const PROCESSES: &str = "business_processes";
    const ACTIONS: &str = "business_process_actions";

    fn signing(value: &str, timestamp: i64) -> Signing<'_> {
        Signing {
            value,
            timestamp,
            remember_until: timestamp + 300,
        }
    }

    fn guard() -> ReplayGuard {
        ReplayGuard::Memory(MemoryGuard::new(
            100,
            GuardMetrics::register(&Registry::new()).unwrap(),
        ))
    }

    async fn check(
        guard: &ReplayGuard,
        signing: Signing<'_>,
        route: &str,
        body: u8,
    ) -> Result<(), ReplayError> {
        guard
            .check(
                signing,
                binding(route, &[body; 32]),
                AT,
                Instant::now() + Duration::from_secs(1),
            )
            .await
    }

    #[tokio::test]
    async fn same_signing_with_same_body_on_the_same_route_is_a_redelivery() {
        let guard = guard();
        check(&guard, signing("v", AT), PROCESSES, 1).await.unwrap();
        check(&guard, signing("v", AT), PROCESSES, 1).await.unwrap();
    }

    #[tokio::test]
    async fn same_signing_with_another_body_is_refused() {
        let guard = guard();
        check(&guard, signing("v", AT), PROCESSES, 1).await.unwrap();
        assert!(matches!(
            check(&guard, signing("v", AT), PROCESSES, 2).await,
            Err(ReplayError::Replayed)
        ));
        check(&guard, signing("w", AT), PROCESSES, 2).await.unwrap();
        check(&guard, signing("v", AT + 1), PROCESSES, 2)
            .await
            .expect("another timestamp is another signing");
    }

    #[tokio::test]
    async fn the_same_headers_on_the_other_route_are_refused_with_any_body() {
        let guard = guard();
        check(&guard, signing("v", AT), PROCESSES, 1).await.unwrap();
        for body in [1, 2] {
            assert!(
                matches!(
                    check(&guard, signing("v", AT), ACTIONS, body).await,
                    Err(ReplayError::Replayed)
                ),
                "body {body} on the other route"
            );
        }
        check(&guard, signing("v", AT), PROCESSES, 1)
            .await
            .expect("the genuine redelivery still passes");
    }

    #[test]
    fn a_binding_tells_routes_and_bodies_apart() {
        let digest = [7; 32];
        assert_eq!(binding(PROCESSES, &digest), binding(PROCESSES, &digest));
        assert_ne!(binding(PROCESSES, &digest), binding(ACTIONS, &digest));
        assert_ne!(binding(PROCESSES, &digest), binding(PROCESSES, &[8; 32]));
    }
}
