//! The replay guard: Authvia's signature does not cover the body, so a captured signature
//! could be replayed with another body inside the timestamp window. The guard remembers which
//! body digest each signed (value, timestamp) came with. The same pair with the same body is a
//! redelivery and passes; with another body it is refused.
//!
//! Memory is bounded: entries expire once their timestamp has left the window (the verifier
//! refuses them by then anyway) and the cache holds at most `capacity` entries. Past capacity
//! the least useful entries are evicted, which can only weaken the guard, never refuse a
//! genuine delivery; `capacity` is sized for the expected delivery rate times the window.

use std::time::Duration;

use moka::sync::Cache;

/// SHA-256 of a body.
pub type Digest = [u8; 32];

/// A signing already seen with another body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed;

/// One signing: Authvia's random value and the signed timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Signing {
    value: Box<str>,
    timestamp: i64,
}

/// Remembers the body digest of each recently verified signing.
pub struct ReplayGuard {
    seen: Cache<Signing, Digest>,
}

impl ReplayGuard {
    /// A guard for a timestamp window of ± `tolerance`, holding at most `capacity` signings.
    pub fn new(tolerance: Duration, capacity: u64) -> Self {
        // A timestamp is accepted for 2 × tolerance of wall time; remember it as long.
        let seen = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(tolerance * 2 + Duration::from_secs(1))
            .build();
        Self { seen }
    }

    /// Records the signing (`value`, `timestamp`) with `digest`, or refuses it when it was seen
    /// with another body.
    ///
    /// # Errors
    /// [`Replayed`] when the signing was already used for a different body.
    pub fn check(&self, value: &str, timestamp: i64, digest: Digest) -> Result<(), Replayed> {
        // `entry().or_insert` is atomic: two racing requests cannot both insert.
        let entry = self.seen.entry(Signing { value: value.into(), timestamp }).or_insert(digest);
        if entry.is_fresh() || *entry.value() == digest {
            Ok(())
        } else {
            Err(Replayed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: i64 = 1_767_225_600;

    #[test]
    fn same_signing_with_same_body_is_a_redelivery() {
        let guard = ReplayGuard::new(Duration::from_secs(300), 100);
        assert!(guard.check("v", AT, [1; 32]).is_ok());
        assert!(guard.check("v", AT, [1; 32]).is_ok());
    }

    #[test]
    fn same_signing_with_another_body_is_refused() {
        let guard = ReplayGuard::new(Duration::from_secs(300), 100);
        guard.check("v", AT, [1; 32]).unwrap();
        assert_eq!(guard.check("v", AT, [2; 32]), Err(Replayed));
        assert!(guard.check("w", AT, [2; 32]).is_ok());
    }
}
