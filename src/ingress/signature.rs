//! Authentication of a delivery: Authvia's signature (see `docs/authvia-webhooks.md`,
//! "Authentication") and the replay guard, as one [`Authenticator`].
//!
//! `X-AUTHVIA-SIGNATURE = base64(HMAC-SHA256(secret, VALUE + "." + len(VALUE) + "." + TIMESTAMP))`.
//! The signature does not cover the body, so verification adds a timestamp window and, once
//! the body is read, a replay guard ([`crate::ingress::replay::ReplayGuard`]).

mod keys;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use secrecy::SecretString;
use sha2::Sha256;

use self::keys::Keys;
use crate::{
    ingress::redrive::{Fingerprint, Redrives},
    ingress::replay::{
        binding, Binding, Digest, GuardFull, ReplayError, ReplayGuard, Signing, StoreError,
    },
    ingress::webhook::EventKind,
};

/// Header carrying the Base64 signature.
pub const SIGNATURE_HEADER: &str = "x-authvia-signature";
/// Header carrying the random value Authvia chose for this signing.
pub const VALUE_HEADER: &str = "x-authvia-value";
/// Header carrying the signing time in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-authvia-timestamp";
/// Header naming the algorithm; only `SHA-256` exists.
pub const ALGORITHM_HEADER: &str = "x-authvia-algorithm";

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery was refused (a closed set: 401 code, metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// One of the four X-AUTHVIA-* headers is absent or not text.
    #[error("a required X-AUTHVIA-* signature header is missing")]
    MissingHeader,
    /// X-AUTHVIA-ALGORITHM is not SHA-256.
    #[error("X-AUTHVIA-ALGORITHM must be SHA-256")]
    UnsupportedAlgorithm,
    /// X-AUTHVIA-TIMESTAMP is not Unix seconds.
    #[error("X-AUTHVIA-TIMESTAMP is not a Unix time in seconds")]
    MalformedTimestamp,
    /// A valid signature whose timestamp is older than the tolerance: a late redelivery that
    /// reuses its original signing, or a replay (the signature is checked first, so garbage
    /// never lands here).
    #[error("X-AUTHVIA-TIMESTAMP is older than the accepted window")]
    StaleTimestamp,
    /// A valid signature whose timestamp is further in the future than the tolerance (clock skew).
    #[error("X-AUTHVIA-TIMESTAMP is too far in the future")]
    FutureTimestamp,
    /// X-AUTHVIA-SIGNATURE is not Base64.
    #[error("X-AUTHVIA-SIGNATURE is not Base64")]
    MalformedSignature,
    /// No configured secret produces the signature.
    #[error("X-AUTHVIA-SIGNATURE does not match")]
    Mismatch,
    /// The same signed (value, timestamp) came with a different body.
    #[error("this signature was already used with a different body")]
    Replayed,
}

impl SignatureError {
    /// Every reason, for pre-registering metric series.
    pub const ALL: [SignatureError; 8] = [
        Self::MissingHeader,
        Self::UnsupportedAlgorithm,
        Self::MalformedTimestamp,
        Self::StaleTimestamp,
        Self::FutureTimestamp,
        Self::MalformedSignature,
        Self::Mismatch,
        Self::Replayed,
    ];

    /// The stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_signature_header",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::MalformedTimestamp => "malformed_timestamp",
            Self::StaleTimestamp => "stale_timestamp",
            Self::FutureTimestamp => "future_timestamp",
            Self::MalformedSignature => "malformed_signature",
            Self::Mismatch => "signature_mismatch",
            Self::Replayed => "replayed_signature",
        }
    }
}

/// A verified signing: what the replay guard remembers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signed {
    /// X-AUTHVIA-VALUE.
    pub value: String,
    /// X-AUTHVIA-TIMESTAMP in Unix seconds.
    pub timestamp: i64,
    /// When the timestamp leaves the window (Unix seconds): the guard forgets it then.
    pub expires_at: i64,
}

/// How long a signing is accepted, and how long the replay guard remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Accepted distance between X-AUTHVIA-TIMESTAMP and now (`--signature-tolerance`).
    pub tolerance: Duration,
    /// How long past the window's end the guard still remembers a signing: the longest a
    /// request may take after its last window check (`--ack-timeout`) plus how far the
    /// replicas' clocks may be apart (`--clock-skew`). No replica can admit it after that.
    pub margin: Duration,
}

/// The verifier of each route. Each Authvia Subscription has its own secret: with one list per
/// route, a signing made for one route does not even verify on the other. With one shared list
/// both routes hold the same verifier (and the replay guard binds a signing to its route).
#[derive(Clone)]
pub struct RouteVerifiers {
    processes: Arc<Verifier>,
    actions: Arc<Verifier>,
}

impl RouteVerifiers {
    /// Both routes verify with `verifier`.
    pub fn shared(verifier: Verifier) -> Self {
        let verifier = Arc::new(verifier);
        Self {
            processes: verifier.clone(),
            actions: verifier,
        }
    }

    /// Each route verifies with its own.
    pub fn per_route(processes: Verifier, actions: Verifier) -> Self {
        Self {
            processes: Arc::new(processes),
            actions: Arc::new(actions),
        }
    }

    /// The verifier of the route carrying `kind` (shared with the task that reloads the
    /// secrets).
    pub fn of(&self, kind: EventKind) -> &Arc<Verifier> {
        match kind {
            EventKind::BusinessProcess => &self.processes,
            EventKind::Action => &self.actions,
        }
    }

    /// Whether the actions route has a verifier of its own.
    pub fn actions_has_its_own(&self) -> bool {
        !Arc::ptr_eq(&self.processes, &self.actions)
    }
}

/// How requests are authenticated: the headers before the body is read, the window again and
/// the replay guard after.
pub enum Authenticator {
    /// X-AUTHVIA-* signatures with a replay guard.
    Signed {
        /// Checks the headers, with the key set of the request's route.
        verifiers: RouteVerifiers,
        /// Remembers signings and the route and body each came with.
        replay: ReplayGuard,
        /// Whole seconds the guard remembers a signing past its window (rounded up).
        margin: i64,
    },
    /// `--insecure-skip-signature`: every request is accepted.
    Skipped,
}

/// A request whose headers passed; its body still has to pass the replay guard.
#[must_use = "a verified request is authenticated only once its body passes admit()"]
pub struct Verified<'a> {
    signing: Option<Pending<'a>>,
}

/// A verified signing waiting for its body.
struct Pending<'a> {
    signed: Signed,
    replay: &'a ReplayGuard,
    margin: i64,
    window: Admission,
}

/// How a verified signing may be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Inside the window: through the replay guard.
    Window,
    /// Older than the window: only as the original signing of a delivery answered 5xx, with
    /// the route and body it came with (once recalled).
    Redrive(Option<Binding>),
}

/// A request whose body was admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// Its route and body (see [`binding`]).
    pub binding: Binding,
    /// Its signing and the guard's margin (none without signatures): the redrive memory
    /// remembers it if the answer is 5xx ([`Admitted::signing`]).
    signing: Option<(Signed, i64)>,
    /// Admitted outside the window, as the original signing of a delivery answered 5xx.
    pub redrive: bool,
}

/// Why a verified request's body was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// Its signing came with another body before: 401.
    #[error(transparent)]
    Refused(#[from] SignatureError),
    /// The shared replay store cannot tell: 503, never admitted unguarded.
    #[error(transparent)]
    StoreUnavailable(#[from] StoreError),
    /// The in-memory replay guard has no room for a new signing: 503, never admitted unguarded.
    #[error(transparent)]
    GuardFull(#[from] GuardFull),
}

impl Authenticator {
    /// Signature checks with these secrets on both routes, this window and this replay guard.
    pub fn signed(secrets: &[SecretString], window: Window, replay: ReplayGuard) -> Self {
        Self::with_verifiers(
            RouteVerifiers::shared(Verifier::new(secrets, window.tolerance)),
            window,
            replay,
        )
    }

    /// Signature checks with each route's own secrets, this window and this replay guard.
    pub fn signed_per_route(
        processes: &[SecretString],
        actions: &[SecretString],
        window: Window,
        replay: ReplayGuard,
    ) -> Self {
        Self::with_verifiers(
            RouteVerifiers::per_route(
                Verifier::new(processes, window.tolerance),
                Verifier::new(actions, window.tolerance),
            ),
            window,
            replay,
        )
    }

    fn with_verifiers(verifiers: RouteVerifiers, window: Window, replay: ReplayGuard) -> Self {
        let margin = window.margin.as_secs() + u64::from(window.margin.subsec_nanos() > 0);
        Self::Signed {
            verifiers,
            replay,
            margin: i64::try_from(margin).unwrap_or(i64::MAX),
        }
    }

    /// Each route's verifier, if signatures are checked: secret rotation replaces their keys.
    pub fn verifiers(&self) -> Option<&RouteVerifiers> {
        match self {
            Self::Signed { verifiers, .. } => Some(verifiers),
            Self::Skipped => None,
        }
    }

    /// The replay guard, if signatures are checked.
    pub fn replay_guard(&self) -> Option<&ReplayGuard> {
        match self {
            Self::Signed { replay, .. } => Some(replay),
            Self::Skipped => None,
        }
    }

    /// Checks the headers of a request carrying `kind` at time `now`, before its body is read,
    /// with that route's secrets. A genuine signing older than the window is not refused yet:
    /// it may be the original signing of a delivery answered 5xx, which [`Verified::recall`]
    /// tells.
    ///
    /// # Errors
    /// The first check that fails; see [`Verifier::verify`].
    pub fn verify(
        &self,
        kind: EventKind,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<Verified<'_>, SignatureError> {
        match self {
            Self::Signed {
                verifiers,
                replay,
                margin,
            } => {
                let verifier = verifiers.of(kind);
                let signed = verifier.verify_signature(headers)?;
                let window = match verifier.check_window(signed.timestamp, now) {
                    Ok(()) => Admission::Window,
                    Err(SignatureError::StaleTimestamp) => Admission::Redrive(None),
                    Err(error) => return Err(error),
                };
                Ok(Verified {
                    signing: Some(Pending {
                        signed,
                        replay,
                        margin: *margin,
                        window,
                    }),
                })
            }
            Self::Skipped => Ok(Verified { signing: None }),
        }
    }
}

impl Verified<'_> {
    /// When the signing was made (Unix seconds), if signatures are checked.
    pub fn signed_at(&self) -> Option<i64> {
        self.signing
            .as_ref()
            .map(|pending| pending.signed.timestamp)
    }

    /// For a signing older than the window, before its body is read: refused unless `redrives`
    /// remembers it as the signing of a delivery answered 5xx. Waits for a shared store until
    /// `deadline` at most.
    ///
    /// # Errors
    /// [`SignatureError::StaleTimestamp`] when it is not remembered; the shared store did not
    /// answer.
    pub async fn recall(
        &mut self,
        redrives: &Redrives,
        deadline: tokio::time::Instant,
    ) -> Result<(), AdmitError> {
        let Some(pending) = &mut self.signing else {
            return Ok(());
        };
        if pending.window != Admission::Redrive(None) {
            return Ok(());
        }
        let fingerprint = signing_of(&pending.signed, pending.margin).fingerprint();
        match redrives.recall(fingerprint, deadline).await? {
            Some(binding) => {
                pending.window = Admission::Redrive(Some(binding));
                Ok(())
            }
            None => Err(SignatureError::StaleTimestamp.into()),
        }
    }

    /// Admits the body with this SHA-256 `digest` on `route` once it has arrived, at time
    /// `now`. Inside the window (checked again: a body trickled in past the window's end is
    /// stale), a redelivery of the same body on the same route passes, and the same signing on
    /// another route or with another body does not. Outside it, only the route and body
    /// recalled for it pass. Waits for a shared replay store until `deadline` at most.
    ///
    /// # Errors
    /// [`SignatureError::StaleTimestamp`], [`SignatureError::Replayed`], the shared store
    /// did not answer, or the in-memory guard is full.
    pub async fn admit(
        mut self,
        route: &str,
        digest: Digest,
        now: SystemTime,
        redrives: &Redrives,
        deadline: tokio::time::Instant,
    ) -> Result<Admitted, AdmitError> {
        let bound = binding(route, &digest);
        let Some(pending) = &mut self.signing else {
            return Ok(Admitted {
                binding: bound,
                signing: None,
                redrive: false,
            });
        };
        // The window ends after the whole second `expires_at` (the check is in whole seconds).
        if pending.window == Admission::Window && unix_seconds(now) > pending.signed.expires_at {
            pending.window = Admission::Redrive(None);
        }
        if pending.window == Admission::Redrive(None) {
            self.recall(redrives, deadline).await?;
        }
        let Some(Pending {
            signed,
            replay,
            margin,
            window,
        }) = self.signing
        else {
            unreachable!("checked above");
        };
        if let Admission::Redrive(recalled) = window {
            if recalled != Some(bound) {
                return Err(SignatureError::StaleTimestamp.into());
            }
            redrives.original_signing_accepted();
        } else {
            replay
                .check(
                    signing_of(&signed, margin),
                    bound,
                    unix_seconds(now),
                    deadline,
                )
                .await
                .map_err(|error| match error {
                    ReplayError::Replayed => AdmitError::from(SignatureError::Replayed),
                    ReplayError::Unavailable(error) => error.into(),
                    ReplayError::Full(error) => error.into(),
                })?;
        }
        Ok(Admitted {
            binding: bound,
            signing: Some((signed, margin)),
            redrive: window != Admission::Window,
        })
    }
}

impl Admitted {
    /// Its signing's fingerprint and the Unix second it was signed at (none without
    /// signatures), for the redrive memory: hashed only when a delivery fails.
    pub fn signing(&self) -> Option<(Fingerprint, i64)> {
        self.signing
            .as_ref()
            .map(|(signed, margin)| (signing_of(signed, *margin).fingerprint(), signed.timestamp))
    }
}

/// The replay guard's view of a signing: remembered until no replica can admit it in the window.
fn signing_of(signed: &Signed, margin: i64) -> Signing<'_> {
    Signing {
        value: &signed.value,
        timestamp: signed.timestamp,
        remember_until: signed.expires_at.saturating_add(1).saturating_add(margin),
    }
}

/// Checks signatures against every configured secret (several during rotation).
pub struct Verifier {
    // Keyed once per rotation; each check clones the keyed state instead of re-keying.
    keys: ArcSwap<Keys>,
    tolerance: Duration,
}

impl Verifier {
    /// A verifier for these secrets and timestamp window.
    pub fn new(secrets: &[SecretString], tolerance: Duration) -> Self {
        Self {
            keys: ArcSwap::from_pointee(Keys::new(secrets)),
            tolerance,
        }
    }

    /// Makes `secrets` the active keys; the ones they replace stay valid for `grace`. Returns
    /// how many keys are active and how many are retiring.
    pub fn rotate(&self, secrets: &[SecretString], grace: Duration) -> (usize, usize) {
        let now = std::time::Instant::now();
        let rotated = self.keys.load().rotated(secrets, grace, now);
        let counts = rotated.counts(now);
        self.keys.store(Arc::new(rotated));
        counts
    }

    /// Verifies the X-AUTHVIA-* headers of a delivery at time `now`.
    ///
    /// # Errors
    /// The first check that fails, in the order: headers, algorithm, timestamp format,
    /// signature, timestamp window. The signature comes before the window so that a refusal for
    /// the window means a genuine signing (a late redelivery, or a replay), never garbage.
    pub fn verify(&self, headers: &HeaderMap, now: SystemTime) -> Result<Signed, SignatureError> {
        let signed = self.verify_signature(headers)?;
        self.check_window(signed.timestamp, now)?;
        Ok(signed)
    }

    /// Verifies the X-AUTHVIA-* headers of a delivery, whenever it was signed.
    ///
    /// # Errors
    /// The first check that fails, in the order: headers, algorithm, timestamp format,
    /// signature.
    pub fn verify_signature(&self, headers: &HeaderMap) -> Result<Signed, SignatureError> {
        let signature = header(headers, SIGNATURE_HEADER)?;
        let value = header(headers, VALUE_HEADER)?;
        let timestamp_text = header(headers, TIMESTAMP_HEADER)?;
        if !header(headers, ALGORITHM_HEADER)?.eq_ignore_ascii_case("SHA-256") {
            return Err(SignatureError::UnsupportedAlgorithm);
        }
        let timestamp = parse_timestamp(timestamp_text)?;
        let signature = STANDARD
            .decode(signature.trim())
            .map_err(|_| SignatureError::MalformedSignature)?;
        let message = signed_message(value, timestamp_text);
        if !self
            .keys
            .load()
            .any_signed(message.as_bytes(), &signature, std::time::Instant::now())
        {
            return Err(SignatureError::Mismatch);
        }
        let expires_at = timestamp.saturating_add(self.tolerance.as_secs() as i64);
        Ok(Signed {
            value: value.to_owned(),
            timestamp,
            expires_at,
        })
    }

    fn check_window(&self, timestamp: i64, now: SystemTime) -> Result<(), SignatureError> {
        let now = unix_seconds(now);
        let tolerance = self.tolerance.as_secs() as i64;
        if timestamp < now - tolerance {
            Err(SignatureError::StaleTimestamp)
        } else if timestamp > now + tolerance {
            Err(SignatureError::FutureTimestamp)
        } else {
            Ok(())
        }
    }
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

/// The signing input: `VALUE + "." + len(VALUE) + "." + TIMESTAMP`.
pub fn signed_message(value: &str, timestamp: &str) -> String {
    format!("{value}.{}.{timestamp}", value.len())
}

/// Signs like Authvia does: used by `bp-relay sign`, tests and benches.
///
/// # Panics
/// Never: HMAC accepts keys of any length.
pub fn sign(secret: &str, value: &str, timestamp: &str) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(signed_message(value, timestamp).as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The four X-AUTHVIA-* headers Authvia would send for a signing of `value` at `timestamp`
/// (Unix seconds) with `secret`: used by `bp-relay sign`, tests and benches.
///
/// # Errors
/// `value` is not a valid header value (control characters, say). Base64, digits and
/// `SHA-256` always are, so nothing else fails.
pub fn signed_headers(
    secret: &str,
    value: &str,
    timestamp: i64,
) -> Result<HeaderMap, http::header::InvalidHeaderValue> {
    let timestamp = timestamp.to_string();
    let mut headers = HeaderMap::with_capacity(5);
    headers.insert(VALUE_HEADER, HeaderValue::from_str(value)?);
    headers.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&sign(secret, value, &timestamp)).expect("Base64 is a header value"),
    );
    headers.insert(
        TIMESTAMP_HEADER,
        HeaderValue::from_str(&timestamp).expect("digits are a header value"),
    );
    headers.insert(ALGORITHM_HEADER, HeaderValue::from_static("SHA-256"));
    Ok(headers)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, SignatureError> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .ok_or(SignatureError::MissingHeader)
}

fn parse_timestamp(text: &str) -> Result<i64, SignatureError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::MalformedTimestamp);
    }
    trimmed
        .parse()
        .map_err(|_| SignatureError::MalformedTimestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    // The worked example of docs/authvia-webhooks.md.
    const SECRET: &str = "whsec_test_5f2b8c";
    const VALUE: &str = "b7d1e0a4c93f";
    const TIMESTAMP: i64 = 1_767_225_600;
    const SIGNATURE: &str = "nHJukfx+24/TpkhI+NcLn5aLRaaDW64TPdrDJpD56vA=";

    fn at(secs: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    }

    fn headers(signature: &str, value: &str, timestamp: &str, algorithm: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, text) in [
            (SIGNATURE_HEADER, signature),
            (VALUE_HEADER, value),
            (TIMESTAMP_HEADER, timestamp),
            (ALGORITHM_HEADER, algorithm),
        ] {
            map.insert(name, HeaderValue::from_str(text).unwrap());
        }
        map
    }

    fn verifier(secrets: &[&str]) -> Verifier {
        let secrets: Vec<SecretString> = secrets.iter().map(|s| SecretString::from(*s)).collect();
        Verifier::new(&secrets, Duration::from_secs(300))
    }

    fn example() -> HeaderMap {
        headers(SIGNATURE, VALUE, &TIMESTAMP.to_string(), "SHA-256")
    }

    #[test]
    fn worked_example_from_the_spec_signs_and_verifies() {
        assert_eq!(
            signed_message(VALUE, "1767225600"),
            "b7d1e0a4c93f.12.1767225600"
        );
        assert_eq!(sign(SECRET, VALUE, "1767225600"), SIGNATURE);
        let signed = verifier(&[SECRET])
            .verify(&example(), at(TIMESTAMP))
            .unwrap();
        assert_eq!(
            signed,
            Signed {
                value: VALUE.into(),
                timestamp: TIMESTAMP,
                expires_at: TIMESTAMP + 300
            }
        );
    }

    #[test]
    fn any_secret_of_a_rotation_verifies() {
        assert!(verifier(&["old", SECRET])
            .verify(&example(), at(TIMESTAMP))
            .is_ok());
        assert_eq!(
            verifier(&["old", "other"]).verify(&example(), at(TIMESTAMP)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn each_missing_header_is_refused() {
        for name in [
            SIGNATURE_HEADER,
            VALUE_HEADER,
            TIMESTAMP_HEADER,
            ALGORITHM_HEADER,
        ] {
            let mut map = example();
            map.remove(name);
            assert_eq!(
                verifier(&[SECRET]).verify(&map, at(TIMESTAMP)),
                Err(SignatureError::MissingHeader),
                "{name}"
            );
        }
    }

    #[test]
    fn timestamp_window_applies_in_the_past_and_the_future() {
        let v = verifier(&[SECRET]);
        assert!(v.verify(&example(), at(TIMESTAMP + 300)).is_ok());
        assert!(v.verify(&example(), at(TIMESTAMP - 300)).is_ok());
        assert_eq!(
            v.verify(&example(), at(TIMESTAMP + 301)),
            Err(SignatureError::StaleTimestamp)
        );
        assert_eq!(
            v.verify(&example(), at(TIMESTAMP - 301)),
            Err(SignatureError::FutureTimestamp)
        );
    }

    #[test]
    fn the_window_is_checked_only_for_a_valid_signature() {
        let v = verifier(&[SECRET]);
        let forged_and_old = headers("AAAA", VALUE, "1767225600", "SHA-256");
        assert_eq!(
            v.verify(&forged_and_old, at(TIMESTAMP + 3600)),
            Err(SignatureError::Mismatch),
            "garbage is a mismatch, whatever its time"
        );
        assert_eq!(
            v.verify(&example(), at(TIMESTAMP + 3600)),
            Err(SignatureError::StaleTimestamp),
            "a genuine late signing is stale"
        );
    }

    #[test]
    fn malformed_inputs_are_named() {
        let v = verifier(&[SECRET]);
        let bad_ts = headers(SIGNATURE, VALUE, "1767225600.5", "SHA-256");
        assert_eq!(
            v.verify(&bad_ts, at(TIMESTAMP)),
            Err(SignatureError::MalformedTimestamp)
        );
        let bad_alg = headers(SIGNATURE, VALUE, "1767225600", "SHA-1");
        assert_eq!(
            v.verify(&bad_alg, at(TIMESTAMP)),
            Err(SignatureError::UnsupportedAlgorithm)
        );
        let bad_b64 = headers("not base64!", VALUE, "1767225600", "SHA-256");
        assert_eq!(
            v.verify(&bad_b64, at(TIMESTAMP)),
            Err(SignatureError::MalformedSignature)
        );
    }

    #[test]
    fn tampered_value_or_timestamp_does_not_verify() {
        let v = verifier(&[SECRET]);
        let other_value = headers(SIGNATURE, "b7d1e0a4c93e", "1767225600", "SHA-256");
        assert_eq!(
            v.verify(&other_value, at(TIMESTAMP)),
            Err(SignatureError::Mismatch)
        );
        let other_time = headers(SIGNATURE, VALUE, "1767225601", "SHA-256");
        assert_eq!(
            v.verify(&other_time, at(TIMESTAMP)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn signed_headers_verify_and_carry_all_four_headers() {
        let headers = signed_headers(SECRET, VALUE, TIMESTAMP).unwrap();
        assert_eq!(headers[SIGNATURE_HEADER], SIGNATURE);
        assert_eq!(headers[ALGORITHM_HEADER], "SHA-256");
        assert!(verifier(&[SECRET]).verify(&headers, at(TIMESTAMP)).is_ok());
        assert!(signed_headers(SECRET, "bad\nvalue", TIMESTAMP).is_err());
    }

    #[tokio::test]
    async fn authenticator_admits_a_redelivery_and_refuses_another_body() {
        let guard = ReplayGuard::Memory(crate::ingress::replay::MemoryGuard::new(
            10,
            crate::ingress::replay::GuardMetrics::register(&prometheus::Registry::new()).unwrap(),
        ));
        let authenticator = Authenticator::signed(&[SecretString::from(SECRET)], WINDOW, guard);
        let redrives = redrives();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let admit = |body: u8| {
            authenticator
                .verify(EventKind::BusinessProcess, &example(), at(TIMESTAMP))
                .unwrap()
                .admit("bp", [body; 32], at(TIMESTAMP), &redrives, deadline)
        };
        admit(1).await.unwrap();
        admit(1).await.unwrap();
        assert!(matches!(
            admit(2).await,
            Err(AdmitError::Refused(SignatureError::Replayed))
        ));
        assert!(matches!(
            authenticator.verify(EventKind::BusinessProcess, &HeaderMap::new(), at(TIMESTAMP)),
            Err(SignatureError::MissingHeader)
        ));
        assert!(Authenticator::Skipped
            .verify(EventKind::BusinessProcess, &HeaderMap::new(), at(TIMESTAMP))
            .unwrap()
            .admit("bp", [3; 32], at(TIMESTAMP), &redrives, deadline)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn with_a_list_per_route_a_signing_verifies_only_on_its_own_route() {
        let processes = [SecretString::from(SECRET)];
        let actions = [SecretString::from("whsec_actions")];
        let authenticator =
            Authenticator::signed_per_route(&processes, &actions, WINDOW, memory_guard());
        let for_processes = example();
        let for_actions = signed_headers("whsec_actions", VALUE, TIMESTAMP).unwrap();
        let verify = |route, headers| authenticator.verify(route, headers, at(TIMESTAMP)).err();
        assert_eq!(verify(EventKind::BusinessProcess, &for_processes), None);
        assert_eq!(verify(EventKind::Action, &for_actions), None);
        assert_eq!(
            verify(EventKind::Action, &for_processes),
            Some(SignatureError::Mismatch),
            "the processes route's signing on the actions route"
        );
        assert_eq!(
            verify(EventKind::BusinessProcess, &for_actions),
            Some(SignatureError::Mismatch),
            "the actions route's signing on the processes route"
        );
        let verifiers = authenticator.verifiers().unwrap();
        assert!(verifiers.actions_has_its_own());
        verifiers
            .of(EventKind::Action)
            .rotate(&[SecretString::from("whsec_actions_2")], Duration::ZERO);
        assert_eq!(
            verify(EventKind::Action, &for_actions),
            Some(SignatureError::Mismatch),
            "rotating the actions route's list replaced its key"
        );
        assert_eq!(
            verify(EventKind::BusinessProcess, &for_processes),
            None,
            "and left the other route's alone"
        );
    }

    #[test]
    fn with_one_shared_list_both_routes_verify_with_it() {
        let authenticator =
            Authenticator::signed(&[SecretString::from(SECRET)], WINDOW, memory_guard());
        for route in EventKind::ALL {
            assert!(authenticator
                .verify(route, &example(), at(TIMESTAMP))
                .is_ok());
        }
        assert!(!authenticator.verifiers().unwrap().actions_has_its_own());
    }

    const WINDOW: Window = Window {
        tolerance: Duration::from_secs(300),
        margin: Duration::from_millis(6_500),
    };

    fn redrives() -> Arc<Redrives> {
        Arc::new(Redrives::new(
            Duration::from_secs(108 * 3600),
            100,
            None,
            true,
            crate::ingress::redrive::RedriveMetrics::register(&prometheus::Registry::new())
                .unwrap(),
        ))
    }

    #[tokio::test]
    async fn outside_the_window_only_a_remembered_5xx_signing_with_its_route_and_body_passes() {
        let authenticator =
            Authenticator::signed(&[SecretString::from(SECRET)], WINDOW, memory_guard());
        let redrives = redrives();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let a_day_later = at(TIMESTAMP + 86_400);
        let stale = || {
            authenticator
                .verify(EventKind::BusinessProcess, &example(), a_day_later)
                .expect("a genuine signing is not refused before the redrive memory is asked")
        };
        let mut never_failed = stale();
        assert!(matches!(
            never_failed.recall(&redrives, deadline).await,
            Err(AdmitError::Refused(SignatureError::StaleTimestamp))
        ));
        let admitted = authenticator
            .verify(EventKind::BusinessProcess, &example(), at(TIMESTAMP))
            .unwrap()
            .admit("bp", [1; 32], at(TIMESTAMP), &redrives, deadline)
            .await
            .unwrap();
        assert!(!admitted.redrive);
        redrives.failed(crate::ingress::redrive::Failed {
            signing: admitted.signing(),
            binding: binding("bp", &[1; 32]),
            subject: 7,
            report: None,
            now: TIMESTAMP,
        });
        for (route, body) in [("bp", 2), ("other", 1)] {
            let mut verified = stale();
            verified.recall(&redrives, deadline).await.unwrap();
            assert!(
                matches!(
                    verified
                        .admit(route, [body; 32], a_day_later, &redrives, deadline)
                        .await,
                    Err(AdmitError::Refused(SignatureError::StaleTimestamp))
                ),
                "the remembered signing with body {body} on route {route}"
            );
        }
        let retried = stale()
            .admit("bp", [1; 32], a_day_later, &redrives, deadline)
            .await
            .expect("the original signing with its route and body");
        assert!(retried.redrive);
        let future = at(TIMESTAMP - 301);
        assert!(matches!(
            authenticator.verify(EventKind::BusinessProcess, &example(), future),
            Err(SignatureError::FutureTimestamp)
        ));
    }

    fn memory_guard() -> ReplayGuard {
        ReplayGuard::Memory(crate::ingress::replay::MemoryGuard::new(
            10,
            crate::ingress::replay::GuardMetrics::register(&prometheus::Registry::new()).unwrap(),
        ))
    }

    #[tokio::test]
    async fn a_body_that_arrives_after_the_window_is_stale_and_not_remembered() {
        let authenticator =
            Authenticator::signed(&[SecretString::from(SECRET)], WINDOW, memory_guard());
        let redrives = redrives();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let head_at_the_last_second = at(TIMESTAMP + 300);
        let body_after_it = head_at_the_last_second + Duration::from_secs(1);
        let verified = authenticator
            .verify(
                EventKind::BusinessProcess,
                &example(),
                head_at_the_last_second,
            )
            .expect("the head arrived inside the window");
        assert!(matches!(
            verified
                .admit("bp", [2; 32], body_after_it, &redrives, deadline)
                .await,
            Err(AdmitError::Refused(SignatureError::StaleTimestamp))
        ));
        let verified = authenticator
            .verify(EventKind::BusinessProcess, &example(), at(TIMESTAMP))
            .unwrap();
        verified
            .admit(
                "bp",
                [1; 32],
                head_at_the_last_second + Duration::from_millis(999),
                &redrives,
                deadline,
            )
            .await
            .expect("inside the window's last second, and the trickled body was not remembered");
    }

    #[test]
    fn the_guard_remembers_past_the_window_by_the_margin_rounded_up() {
        let Authenticator::Signed { margin, .. } =
            Authenticator::signed(&[SecretString::from(SECRET)], WINDOW, memory_guard())
        else {
            unreachable!("a signed authenticator")
        };
        assert_eq!(margin, 7);
    }
}
