//! The replay guard: Authvia's signature does not cover the body, so a captured signature
//! could be replayed with another body inside the timestamp window. The guard remembers which
//! body digest each signed (value, timestamp) came with. The same pair with the same body is a
//! redelivery and passes; with another body it is refused.
//!
//! Memory is bounded by `capacity` entries of fixed size (128-bit fingerprints of the signing
//! and of the body: well under 100 bytes each with the cache's own overhead). Entries need no
//! expiry to stay correct: the timestamp is part of the signing, and the verifier refuses a
//! timestamp outside the window before the guard is asked. Past capacity the coldest entries
//! are evicted, which can only weaken the guard, never refuse a genuine delivery; `capacity`
//! is sized for the expected delivery rate times the window.

use quick_cache::sync::Cache;
use sha2::{Digest as _, Sha256};

/// SHA-256 of a body.
pub type Digest = [u8; 32];

/// A signing already seen with another body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed;

/// Remembers the body digest of each recently verified signing.
pub struct ReplayGuard {
    // Signing fingerprint -> the first 128 bits of the body's SHA-256: forging a second body
    // with the same 128 bits is as out of reach as with all 256, at half the memory.
    seen: Cache<u128, u128>,
}

impl ReplayGuard {
    /// A guard holding at most `capacity` signings.
    pub fn new(capacity: u64) -> Self {
        Self { seen: Cache::new(usize::try_from(capacity).unwrap_or(usize::MAX)) }
    }

    /// Records the signing (`value`, `timestamp`) with `digest`, or refuses it when it was seen
    /// with another body.
    ///
    /// # Errors
    /// [`Replayed`] when the signing was already used for a different body.
    pub fn check(&self, value: &str, timestamp: i64, digest: Digest) -> Result<(), Replayed> {
        // Atomic: of two racing requests with one signing, one inserts, the other sees it.
        let body = first_128_bits(&digest);
        let remembered = self.seen.get_or_insert_with(&fingerprint(value, timestamp), || Ok::<_, Replayed>(body))?;
        if remembered == body {
            Ok(())
        } else {
            Err(Replayed)
        }
    }

    /// Signings remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no signing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// A fixed-size name for a signing: 128 bits of SHA-256, so an entry's size does not depend on
/// the header's length and two signings do not collide by chance.
fn fingerprint(value: &str, timestamp: i64) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update(value.as_bytes());
    // The separator keeps ("a1", 2) and ("a", 12) apart.
    hasher.update([0]);
    hasher.update(timestamp.to_be_bytes());
    first_128_bits(&hasher.finalize().into())
}

fn first_128_bits(hash: &[u8; 32]) -> u128 {
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash[..16]);
    u128::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: i64 = 1_767_225_600;

    #[test]
    fn same_signing_with_same_body_is_a_redelivery() {
        let guard = ReplayGuard::new(100);
        assert!(guard.check("v", AT, [1; 32]).is_ok());
        assert!(guard.check("v", AT, [1; 32]).is_ok());
        assert_eq!(guard.len(), 1);
    }

    #[test]
    fn same_signing_with_another_body_is_refused() {
        let guard = ReplayGuard::new(100);
        guard.check("v", AT, [1; 32]).unwrap();
        assert_eq!(guard.check("v", AT, [2; 32]), Err(Replayed));
        assert!(guard.check("w", AT, [2; 32]).is_ok());
        assert!(guard.check("v", AT + 1, [2; 32]).is_ok(), "another timestamp is another signing");
    }

    #[test]
    fn memory_stays_within_capacity() {
        let guard = ReplayGuard::new(1_000);
        for n in 0..10_000 {
            guard.check(&n.to_string(), AT, [3; 32]).unwrap();
        }
        assert!(guard.len() <= 1_000, "{}", guard.len());
        assert!(guard.check("9999", AT, [4; 32]).is_err(), "the newest signing is remembered");
    }
}
