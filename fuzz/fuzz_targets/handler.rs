//! The whole webhook handler (`http::Ingress::handle` over the in-memory publisher) on any
//! method, target, headers and body.
//!
//! Input: a request as text (`METHOD TARGET`, header lines, an empty line, the body; see
//! `fuzz/corpus/handler/`). Header lines starting with `fuzz-` steer the harness and are not
//! sent:
//! - `fuzz-sign: VALUE`: sign the request as Authvia would, now, with the relay's secret, so
//!   the fuzzer reaches what happens after authentication (a fuzzer cannot forge an HMAC);
//! - `fuzz-chunk: N`: deliver the body in chunks of N bytes;
//! - `fuzz-end: broken | stalled`: after the body, the connection breaks, or nothing more comes;
//! - `fuzz-publish: CODE`: the publisher fails every record with that code (`kafka_timeout`...);
//! - `fuzz-replay: TARGET BODY` (repeatable): afterwards the attacker sends the signed request's
//!   headers (its X-AUTHVIA-* among them) again, to TARGET with BODY (the rest of the line).
//!
//! Fails on: a panic; an answer whose status and code are not a row of README's status table, or
//! an error body other than `{code, message}`; any record written for a request the harness did
//! not sign; a 200 without exactly one record holding the exact body (but for Authvia's disable
//! callback, which writes nothing), or a record without a 200; a replay that writes anything but
//! the signed request's own body on its own route.
#![no_main]

use std::{
    sync::OnceLock,
    time::{SystemTime, UNIX_EPOCH},
};

use bp_relay::{
    ingress::http::Ingress,
    ingress::publish::{FailureReason, Memory},
    ingress::route::Route,
    ingress::signature,
    process::parts::Parts,
    Config,
};
use bp_relay_fuzz::{
    frames::{End, Frames},
    header_lines, status_table, TextRequest,
};
use clap::Parser;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "whsec_fuzz_handler";

/// What the `fuzz-` lines ask of the harness.
#[derive(Default)]
struct Steering<'a> {
    sign: Option<&'a [u8]>,
    chunk: Option<usize>,
    end: Option<End>,
    failing: Option<FailureReason>,
    replays: Vec<(&'a [u8], &'a [u8])>,
}

fuzz_target!(|data: &[u8]| {
    let Some(text) = TextRequest::split(data) else {
        return;
    };
    let (Ok(method), Ok(uri)) = (Method::from_bytes(text.method), Uri::try_from(text.target))
    else {
        return;
    };
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    let mut steering = Steering::default();
    for (name, value) in header_lines(text.head) {
        if !steer(&mut steering, name, value) {
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                request.headers_mut().append(name, value);
            }
        }
    }
    let signed = steering
        .sign
        .and_then(|value| sign(&mut request, value))
        .is_some();
    let captured = request.headers().clone();
    let body = Frames::new(
        text.body,
        steering.chunk.unwrap_or(text.body.len()),
        steering.end.unwrap_or(End::Complete),
    );
    let request = request.map(|()| body);

    let ingress = ingress();
    ingress.publisher().fail_with(steering.failing);
    let (status, json) = runtime().block_on(async {
        let response = ingress.handle(request).await;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("an in-memory body")
            .to_bytes();
        (
            status,
            serde_json::from_slice::<serde_json::Value>(&bytes).expect("every answer is JSON"),
        )
    });

    let code = json.get("code").and_then(serde_json::Value::as_str);
    assert!(
        status_table::documented(table(), status, code),
        "undocumented answer {status} {json}"
    );
    if status != 200 {
        let object = json.as_object().expect("an error body is an object");
        assert!(
            object.len() == 2 && object["message"].is_string(),
            "an error body is {{code, message}}: {json}"
        );
    }
    let published = ingress.publisher().published();
    if !signed {
        assert!(
            published.is_empty(),
            "a record was written for an unsigned request"
        );
    }
    match status {
        // Authvia's disable callback (GET /webhooks/subscription-disabled): acknowledged, unsigned.
        200 if json.get("acknowledged").is_some() => {
            assert!(published.is_empty(), "the disable callback wrote a record")
        }
        200 => {
            assert_eq!(published.len(), 1, "a 200 stands for exactly one record");
            assert_eq!(
                &published[0].1.value[..],
                text.body,
                "the record holds the exact body"
            );
        }
        _ => assert!(
            published.is_empty(),
            "a record was written, answered {status}"
        ),
    }
    if signed {
        // A 200 with a record means the guard bound the signing to this route and body. Any other
        // answer (the disable callback's 200 included) may have come before the guard (404, 413,
        // 408, overloaded): then the signing is still unbound, and the first request that gets it
        // past the guard binds it. The signature does not cover the body, so no relay can tell
        // that first use from Authvia's own.
        let wrote = status == 200 && json.get("acknowledged").is_none();
        let bound = wrote.then_some((text.target, text.body));
        replay(&ingress, &captured, bound, &steering.replays);
    }
});

/// The attacker's moves with the signed request's headers: once a request with them was
/// written, every further write is only a duplicate of that body on that route.
fn replay<'a>(
    ingress: &Ingress<Memory>,
    captured: &http::HeaderMap,
    bound: Option<(&'a [u8], &'a [u8])>,
    replays: &[(&'a [u8], &'a [u8])],
) {
    let route_of = |target: &[u8]| {
        std::str::from_utf8(target)
            .ok()
            .and_then(|target| Uri::try_from(target).ok())
            .and_then(|uri| kind_of(uri.path()))
    };
    let mut bound = bound.map(|(target, body)| (route_of(target), body));
    for (replay_target, replay_body) in replays {
        let Ok(uri) = Uri::try_from(*replay_target) else {
            continue;
        };
        let replay_route = kind_of(uri.path());
        let mut request = Request::post(uri)
            .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
                replay_body,
            )))
            .expect("a request");
        *request.headers_mut() = captured.clone();
        let before = ingress.publisher().published().len();
        let status = runtime()
            .block_on(ingress.handle(request))
            .status()
            .as_u16();
        let published = ingress.publisher().published();
        if published.len() > before {
            assert!(
                replay_route.is_some(),
                "a replay off the routes wrote ({status})"
            );
            let (bound_route, bound_body) = *bound.get_or_insert((replay_route, replay_body));
            assert!(
                replay_route == bound_route && *replay_body == bound_body,
                "a replay wrote a record that is not the bound body on its route ({status})"
            );
            assert_eq!(&published[before].1.value[..], bound_body);
        }
    }
}

/// Takes a `fuzz-` line; false for a header to send.
fn steer<'a>(steering: &mut Steering<'a>, name: &[u8], value: &'a [u8]) -> bool {
    match name.to_ascii_lowercase().as_slice() {
        b"fuzz-sign" => steering.sign = Some(value),
        b"fuzz-chunk" => {
            steering.chunk = std::str::from_utf8(value).ok().and_then(|n| n.parse().ok())
        }
        b"fuzz-end" => {
            steering.end = match value {
                b"broken" => Some(End::Broken),
                b"stalled" => Some(End::Stalled),
                _ => Some(End::Complete),
            }
        }
        b"fuzz-replay" => {
            let split = value.iter().position(|byte| *byte == b' ');
            let (target, body) = split.map_or((value, &value[value.len()..]), |at| {
                (&value[..at], &value[at + 1..])
            });
            steering.replays.push((target, body));
        }
        b"fuzz-publish" => {
            steering.failing = FailureReason::ALL
                .into_iter()
                .find(|reason| reason.code().as_bytes() == value)
        }
        _ => return false,
    }
    true
}

/// Replaces the request's X-AUTHVIA-* headers with a valid signing of `value` now; `None` when
/// `value` cannot be a header value (then the request goes unsigned).
fn sign(request: &mut Request<()>, value: &[u8]) -> Option<()> {
    let value = std::str::from_utf8(value).ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    let signing = signature::signed_headers(SECRET, value, now).ok()?;
    for (name, value) in &signing {
        request.headers_mut().insert(name, value.clone());
    }
    Some(())
}

/// A fresh ingress for each input: the replay guard and the records start empty. The
/// configuration is parsed once.
fn ingress() -> Ingress<Memory> {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let args = [
            "bp-relay",
            "--kafka-brokers",
            "unused:9092",
            "--signing-secrets",
            SECRET,
            "--max-body",
            "4KiB",
            "--replay-capacity",
            "16",
        ];
        let config = Config::try_parse_from(args).expect("the fuzz target's flags parse");
        config
            .validate()
            .expect("the fuzz target's flags are valid");
        config
    });
    let (ingress, _) = Parts::over(config, Memory::keeping()).expect("the fuzz target's secret");
    ingress
}

/// The event kind of a webhook route's path, none for any other path.
fn kind_of(path: &str) -> Option<bp_relay::ingress::webhook::EventKind> {
    Route::of(path).and_then(Route::kind)
}

/// One thread, a paused clock: a stalled body meets its deadline at once, not after seconds.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime")
    })
}

fn table() -> &'static [status_table::Row] {
    static ROWS: OnceLock<Vec<status_table::Row>> = OnceLock::new();
    ROWS.get_or_init(status_table::rows)
}
