//! The X-AUTHVIA-* signature check (`signature::Verifier` and the `Authenticator` around it,
//! replay guard included) on any block of header lines.
//!
//! The clock stands at the worked example's timestamp of docs/authvia-webhooks.md and the
//! secrets are a rotation: another one, then the worked example's. So the example's headers
//! (`fuzz/corpus/signature_headers/`) pass, and each change the fuzzer makes to them is a
//! header that is missing, repeated, malformed, outside the window, or signed otherwise.
//!
//! Fails on: a panic; a pass without the HMAC of a secret over the value and timestamp given,
//! or outside the window; a genuine signing older than the window that an empty redrive memory
//! does not refuse as stale; a passed signing that does not admit its body again on its route,
//! or admits another body, or any body on the other route; a pass on the actions route when
//! that route has its own secret (the fuzzer holds only signings made for the other one).
#![no_main]

use std::{
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
    time::{Duration, UNIX_EPOCH},
};

use base64::{engine::general_purpose::STANDARD, Engine};
use bp_relay::{
    ingress::redrive::{RedriveMetrics, Redrives},
    ingress::replay::{GuardMetrics, MemoryGuard, ReplayGuard},
    ingress::signature::{self, AdmitError, Authenticator, SignatureError, Verifier, Window},
    ingress::webhook::EventKind,
};
use bp_relay_fuzz::header_map;
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

const NOW: u64 = 1_767_225_600;
const SECRETS: [&str; 2] = ["whsec_rotated_out", "whsec_test_5f2b8c"];
const WINDOW: Duration = Duration::from_secs(300);

fuzz_target!(|data: &[u8]| {
    let headers = header_map(data);
    let secrets = SECRETS.map(SecretString::from);
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let verdict = Verifier::new(&secrets, WINDOW).verify(&headers, now);
    // A fresh guard for each input: what an earlier input admitted must not decide this one.
    let metrics = GuardMetrics::register(&prometheus::Registry::new()).expect("a fresh registry");
    let authenticator = Authenticator::signed(
        &secrets,
        Window {
            tolerance: WINDOW,
            margin: Duration::from_secs(6),
        },
        ReplayGuard::Memory(MemoryGuard::new(4, metrics)),
    );
    let redrives = Redrives::new(
        Duration::from_secs(108 * 3600),
        4,
        None,
        true,
        RedriveMetrics::register(&prometheus::Registry::new()).expect("a fresh registry"),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    match authenticator.verify(EventKind::BusinessProcess, &headers, now) {
        // A genuine signing older than the window waits for the redrive memory, which holds
        // nothing here: refused as stale before any body.
        Ok(mut verified) if verdict == Err(SignatureError::StaleTimestamp) => assert!(
            matches!(
                ready(verified.recall(&redrives, deadline)),
                Err(AdmitError::Refused(SignatureError::StaleTimestamp))
            ),
            "a stale signing passed an empty redrive memory: {headers:?}"
        ),
        outcome => assert_eq!(verdict.as_ref().err(), outcome.err().as_ref()),
    }
    let metrics = GuardMetrics::register(&prometheus::Registry::new()).expect("a fresh registry");
    let per_route = Authenticator::signed_per_route(
        &secrets,
        &[SecretString::from("whsec_actions_own")],
        Window {
            tolerance: WINDOW,
            margin: Duration::from_secs(6),
        },
        ReplayGuard::Memory(MemoryGuard::new(4, metrics)),
    );
    assert!(
        per_route.verify(EventKind::Action, &headers, now).is_err(),
        "a signing for the processes route passed on the actions route's own secret: {headers:?}"
    );
    let Ok(signed) = verdict else { return };

    assert_eq!(signed.value, text(&headers, signature::VALUE_HEADER));
    assert!(
        signed.timestamp.abs_diff(NOW as i64) <= WINDOW.as_secs(),
        "passed outside the window: {headers:?}"
    );
    let given = STANDARD
        .decode(text(&headers, signature::SIGNATURE_HEADER).trim())
        .expect("a passed signature is Base64");
    let timestamp = text(&headers, signature::TIMESTAMP_HEADER);
    let matches_a_secret = SECRETS.iter().any(|secret| {
        STANDARD
            .decode(signature::sign(secret, &signed.value, timestamp))
            .ok()
            .as_ref()
            == Some(&given)
    });
    assert!(
        matches_a_secret,
        "passed without the HMAC of a secret: {headers:?}"
    );

    let admit_on = |route, digest| {
        let verified = authenticator
            .verify(EventKind::BusinessProcess, &headers, now)
            .expect("it passed once");
        ready(verified.admit(route, digest, now, &redrives, deadline))
    };
    let admit = |digest| admit_on("business_processes", digest);
    assert!(admit([1; 32]).is_ok());
    assert!(
        admit([1; 32]).is_ok(),
        "a redelivery of the same body passes"
    );
    let replayed = admit([2; 32]);
    assert!(
        matches!(replayed, Err(AdmitError::Refused(SignatureError::Replayed))),
        "another body with the same signing is a replay: {replayed:?}"
    );
    for digest in [[1; 32], [2; 32]] {
        let rerouted = admit_on("business_process_actions", digest);
        assert!(
            matches!(rerouted, Err(AdmitError::Refused(SignatureError::Replayed))),
            "the same signing on the other route is a replay, whatever its body: {rerouted:?}"
        );
    }
});

/// The output of a future that must not wait: the in-memory guard answers at once.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the in-memory replay guard waited"),
    }
}

/// The first value of a header that verification read as text.
fn text<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers[name]
        .to_str()
        .expect("verification read it as text")
}
