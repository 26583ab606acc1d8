//! The signing keys in force: the configured secrets, and after a rotation the ones just
//! replaced, until their grace period ends (deliveries signed just before the swap, and
//! Authvia's retries of them, still verify).

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest as _, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// One key, keyed once; the secret itself is not kept, only a digest to recognise it.
#[derive(Clone)]
struct Key {
    id: [u8; 32],
    mac: HmacSha256,
}

impl Key {
    fn new(secret: &SecretString) -> Key {
        let bytes = secret.expose_secret().as_bytes();
        // HMAC accepts keys of any length: this cannot fail.
        let mac = HmacSha256::new_from_slice(bytes).expect("HMAC takes keys of any length");
        Key {
            id: Sha256::digest(bytes).into(),
            mac,
        }
    }

    /// Whether this key signed `message` as `signature`, compared in constant time.
    fn signed(&self, message: &[u8], signature: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(message);
        mac.verify_slice(signature).is_ok()
    }
}

/// The active keys and the retiring ones with the end of their grace.
#[derive(Clone)]
pub(super) struct Keys {
    active: Vec<Key>,
    retiring: Vec<(Key, Instant)>,
}

impl Keys {
    pub(super) fn new(secrets: &[SecretString]) -> Keys {
        Keys {
            active: secrets.iter().map(Key::new).collect(),
            retiring: Vec::new(),
        }
    }

    /// The keys after `secrets` replace the active ones at `now`: an active key that is gone
    /// stays valid until `now + grace`; retiring keys keep their own end (or come back, if
    /// configured again).
    pub(super) fn rotated(&self, secrets: &[SecretString], grace: Duration, now: Instant) -> Keys {
        let active: Vec<Key> = secrets.iter().map(Key::new).collect();
        let is_active = |key: &Key| active.iter().any(|new| new.id == key.id);
        let mut retiring: Vec<(Key, Instant)> = self
            .retiring
            .iter()
            .filter(|(key, until)| *until > now && !is_active(key))
            .cloned()
            .collect();
        retiring.extend(
            self.active
                .iter()
                .filter(|key| !is_active(key))
                .map(|key| (key.clone(), now + grace)),
        );
        Keys { active, retiring }
    }

    /// Whether an active key, or a retiring one still in its grace at `now`, signed `message`.
    pub(super) fn any_signed(&self, message: &[u8], signature: &[u8], now: Instant) -> bool {
        self.active.iter().any(|key| key.signed(message, signature))
            || self
                .retiring
                .iter()
                .any(|(key, until)| *until > now && key.signed(message, signature))
    }

    /// How many keys are active, and how many still retiring at `now`.
    pub(super) fn counts(&self, now: Instant) -> (usize, usize) {
        (
            self.active.len(),
            self.retiring
                .iter()
                .filter(|(_, until)| *until > now)
                .count(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(names: &[&str]) -> Vec<SecretString> {
        names.iter().map(|name| SecretString::from(*name)).collect()
    }

    fn signature(secret: &str, message: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }

    #[test]
    fn a_replaced_secret_verifies_until_its_grace_ends() {
        let now = Instant::now();
        let grace = Duration::from_secs(60);
        let keys = Keys::new(&secrets(&["old"])).rotated(&secrets(&["new"]), grace, now);
        let (old, new) = (signature("old", b"m"), signature("new", b"m"));
        assert!(keys.any_signed(b"m", &new, now));
        assert!(
            keys.any_signed(b"m", &old, now + grace - Duration::from_secs(1)),
            "within the grace"
        );
        assert!(!keys.any_signed(b"m", &old, now + grace), "after it");
        assert_eq!(keys.counts(now), (1, 1));
        assert_eq!(keys.counts(now + grace), (1, 0));
    }

    #[test]
    fn a_secret_configured_again_is_active_not_retiring() {
        let now = Instant::now();
        let keys = Keys::new(&secrets(&["a"]))
            .rotated(&secrets(&["b"]), Duration::from_secs(60), now)
            .rotated(&secrets(&["a", "b"]), Duration::from_secs(60), now);
        assert_eq!(keys.counts(now), (2, 0));
    }
}
