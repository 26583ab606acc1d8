//! The replay guard from the attacker's side (memory guard, one relay): Authvia's deliveries
//! interleaved at random with an attacker who holds every request Authvia sent (headers and
//! bodies) and sends them to either route, with any body, at any time, as slowly as the
//! deadlines allow, while Authvia's clock is up to 2 s off the relay's.
//!
//! The broker goes down (503, nothing written) or turns slow (503, the record lands after its
//! answer) at random, and Authvia redrives what it was not answered 2xx for, with its original
//! headers (after the window too) or signed afresh.
//!
//! The properties, on what the publisher received and what was answered: every record is byte
//! for byte a body Authvia sent, on the route it sent it to (dead letters included: Authvia's
//! bodies here are all valid, so there must be none); every genuine first delivery is taken
//! while the broker is up (the guard is not "safe" by refusing everything); a redrive is never
//! refused (401), and once the broker is back every delivery is answered 2xx naming a record of
//! its own body; and no redrive writes a second record: a body is in the topic at most once
//! more than the copies of it sent with its own headers (a redelivery inside the window is
//! written again; those are the attacker's duplicates).
//!
//! Time is tokio's paused clock: the relay's wall clock (`Ingress::with_clock`) is a base plus
//! the paused clock's progress, so a trickled body or a wait to the window's edge costs nothing.

use std::{
    cell::Cell,
    collections::VecDeque,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bp_relay::{
    demo::samples,
    ingress::http::{Ingress, ACTION_PATH, PROCESS_PATH},
    ingress::publish::{FailureReason, Memory},
    ingress::signature,
    process::parts::Parts,
};
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use proptest::prelude::*;
use tokio::time::{Instant, Sleep};

use crate::relay_args::RelayArgs;

const SECRET: &str = "whsec_attacker_property";
/// `--signature-tolerance` (short: waiting to its edge is free on the paused clock anyway).
const TOLERANCE_SECONDS: i64 = 5;
const PROCESS_TOPIC: &str = "authvia.business-processes";
const ACTION_TOPIC: &str = "authvia.business-process-actions";

thread_local! {
    /// The relay's wall clock at `START` of the current case, and that instant.
    static BASE: Cell<Option<(SystemTime, Instant)>> = const { Cell::new(None) };
}

/// The relay's wall clock: the case's base plus how far tokio's paused clock has moved.
fn relay_clock() -> SystemTime {
    let (base, start) = BASE.with(Cell::get).expect("set at the start of each case");
    base + Instant::now().duration_since(start)
}

fn relay_seconds() -> i64 {
    relay_clock().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn ingress() -> Ingress<Memory> {
    let config = RelayArgs::new()
        .brokers("unused:9092")
        .signing_secrets(&[SECRET])
        .flag("--signature-tolerance", &format!("{TOLERANCE_SECONDS}s"))
        .flag("--ack-timeout", "4s")
        .parse()
        .unwrap();
    config.validate().unwrap();
    let (ingress, _) = Parts::over(&config, Memory::keeping()).unwrap();
    ingress.with_clock(relay_clock)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Processes,
    Actions,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::Processes => PROCESS_PATH,
            Route::Actions => ACTION_PATH,
        }
    }

    fn topic(self) -> &'static str {
        match self {
            Route::Processes => PROCESS_TOPIC,
            Route::Actions => ACTION_TOPIC,
        }
    }

    fn other(self) -> Route {
        match self {
            Route::Processes => Route::Actions,
            Route::Actions => Route::Processes,
        }
    }
}

/// A body the attacker sends with captured headers.
#[derive(Debug, Clone)]
enum Forged {
    /// Bytes of its own (often not even JSON: a dead letter if admitted).
    Own(Vec<u8>),
    /// Another genuine delivery's body (valid for its route).
    Genuine(usize),
}

/// One step of a case.
#[derive(Debug, Clone)]
enum Move {
    /// Authvia signs a new delivery with its clock `skew_ms` off the relay's and sends it.
    Deliver { route: Route, skew_ms: i64 },
    /// Authvia (or the attacker) sends a delivery again, as it was.
    Redeliver { which: usize },
    /// Captured headers, another body, the same route.
    OtherBody { which: usize, body: Forged },
    /// Captured headers on the other route, with its genuine body or another.
    OtherRoute { which: usize, body: Option<Forged> },
    /// Captured headers sent in the window's last second, a body (other route or other body)
    /// trickled in over `trickle_ms`.
    EdgeTrickle {
        which: usize,
        other_route: bool,
        body: Forged,
        trickle_ms: u64,
    },
    /// Time passes.
    Wait { ms: u64 },
    /// The broker changes.
    Broker(Broker),
    /// Authvia retries a delivery it has not been answered 2xx for: with its original headers,
    /// or signed afresh.
    Redrive { which: usize, fresh: bool },
}

/// The broker behind the in-memory publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broker {
    /// Acknowledges at once (and lands every record held back).
    Up,
    /// Every record fails at once: 503 `kafka_unavailable`, nothing written.
    Down,
    /// Acknowledges only after the answer: 503 `kafka_timeout`, the record lands later.
    Slow,
}

fn forged() -> impl Strategy<Value = Forged> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Forged::Own),
        Just(Forged::Own(br#"{"id":"forged","partner":"P","merchant":"M","customer":"c","status":"scheduled","expiration":"2026-12-01T00:00:00Z","actions":[],"addresses":[]}"#.to_vec())),
        any::<prop::sample::Index>().prop_map(|index| Forged::Genuine(index.index(usize::MAX))),
    ]
}

fn route() -> impl Strategy<Value = Route> {
    prop_oneof![Just(Route::Processes), Just(Route::Actions)]
}

fn a_move() -> impl Strategy<Value = Move> {
    let which = any::<prop::sample::Index>().prop_map(|index| index.index(usize::MAX));
    prop_oneof![
        3 => (route(), -2_000i64..=2_000).prop_map(|(route, skew_ms)| Move::Deliver { route, skew_ms }),
        1 => which.clone().prop_map(|which| Move::Redeliver { which }),
        2 => (which.clone(), forged()).prop_map(|(which, body)| Move::OtherBody { which, body }),
        2 => (which.clone(), prop::option::of(forged()))
            .prop_map(|(which, body)| Move::OtherRoute { which, body }),
        2 => (which.clone(), any::<bool>(), forged(), 200u64..3_000).prop_map(
            |(which, other_route, body, trickle_ms)| Move::EdgeTrickle { which, other_route, body, trickle_ms }
        ),
        1 => (0u64..8_000).prop_map(|ms| Move::Wait { ms }),
        1 => prop_oneof![Just(Broker::Up), Just(Broker::Down), Just(Broker::Slow)].prop_map(Move::Broker),
        2 => (which.clone(), any::<bool>()).prop_map(|(which, fresh)| Move::Redrive { which, fresh }),
    ]
}

/// A delivery Authvia made: its headers, route and body.
struct Genuine {
    headers: HeaderMap,
    timestamp: i64,
    route: Route,
    body: Vec<u8>,
    /// Authvia was answered 2xx for it.
    taken: bool,
    /// Copies sent with its own headers, route and body, besides the first and the redrives.
    copies: usize,
}

/// A body sent in pieces, `pause` apart on tokio's clock.
struct Trickle {
    pieces: VecDeque<Bytes>,
    pause: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Trickle {
    fn new(body: &[u8], over: Duration) -> Trickle {
        let pieces: VecDeque<Bytes> = body.chunks(4).map(Bytes::copy_from_slice).collect();
        let gaps = u32::try_from(pieces.len().max(1)).unwrap();
        Trickle {
            pieces,
            pause: over / gaps,
            sleep: None,
        }
    }
}

impl Body for Trickle {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let pause = self.pause;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
        if sleep.as_mut().poll(context).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        Poll::Ready(self.pieces.pop_front().map(|piece| Ok(Frame::data(piece))))
    }
}

fn request<B>(route: Route, headers: &HeaderMap, body: B) -> Request<B> {
    let mut request = Request::post(route.path()).body(body).unwrap();
    *request.headers_mut() = headers.clone();
    request
}

fn full(bytes: &[u8]) -> http_body_util::Full<Bytes> {
    http_body_util::Full::new(Bytes::copy_from_slice(bytes))
}

/// Authvia's body for its `n`th delivery on `route`: a valid sample of a process of its own
/// (so no later record of its key is newer than its own).
fn genuine_body(route: Route, n: usize) -> Vec<u8> {
    let (sample, key) = match route {
        Route::Processes => (samples::BUSINESS_PROCESS, "id"),
        Route::Actions => (samples::ACTION, "businessProcess"),
    };
    let mut body: serde_json::Value = serde_json::from_slice(sample).unwrap();
    body[key] = serde_json::Value::String(format!("process-{n}"));
    serde_json::to_vec(&body).unwrap()
}

/// Sets the publisher's broker.
fn set_broker(ingress: &Ingress<Memory>, broker: Broker) {
    let publisher = ingress.publisher();
    match broker {
        Broker::Up => {
            publisher.fail_with(None);
            publisher.land_held();
        }
        Broker::Down => publisher.fail_with(Some(FailureReason::Transport)),
        Broker::Slow => {
            publisher.fail_with(None);
            publisher.hold_acknowledgements();
        }
    }
}

/// What Authvia's request for `delivery` was answered: a 2xx must name a record of its body.
async fn answered(
    ingress: &Ingress<Memory>,
    delivery: &mut Genuine,
    headers: &HeaderMap,
) -> Result<u16, TestCaseError> {
    let answer = ingress
        .handle(request(delivery.route, headers, full(&delivery.body)))
        .await;
    let status = answer.status().as_u16();
    if status == 200 {
        let bytes = answer.into_body().collect().await.unwrap().to_bytes();
        let ack: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let offset = usize::try_from(ack["offset"].as_i64().unwrap()).unwrap();
        let published = ingress.publisher().published();
        let (topic, record) = &published[offset];
        prop_assert_eq!(topic.as_str(), delivery.route.topic());
        prop_assert!(
            record.value[..] == delivery.body[..],
            "a 2xx named another delivery's record: {}",
            ack
        );
        delivery.taken = true;
    }
    Ok(status)
}

/// Runs one case and returns what the publisher received, checking each genuine first delivery
/// was taken.
async fn play(moves: &[Move]) -> Result<(), TestCaseError> {
    let ingress = ingress();
    let mut genuine: Vec<Genuine> = Vec::new();
    let mut broker = Broker::Up;
    for step in moves {
        match step {
            Move::Deliver { route, skew_ms } => {
                let authvia_ms = relay_clock()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64
                    + skew_ms;
                let timestamp = authvia_ms.div_euclid(1000);
                let value = format!("authvia-{}", genuine.len());
                let headers = signature::signed_headers(SECRET, &value, timestamp).unwrap();
                let mut delivery = Genuine {
                    headers: headers.clone(),
                    timestamp,
                    route: *route,
                    body: genuine_body(*route, genuine.len()),
                    taken: false,
                    copies: 0,
                };
                let status = answered(&ingress, &mut delivery, &headers).await?;
                if broker == Broker::Up {
                    prop_assert_eq!(status, 200, "a genuine delivery is taken");
                } else {
                    prop_assert_eq!(status, 503, "a delivery the broker did not take");
                }
                genuine.push(delivery);
            }
            Move::Wait { ms } => tokio::time::sleep(Duration::from_millis(*ms)).await,
            Move::Broker(next) => {
                set_broker(&ingress, *next);
                broker = *next;
            }
            _ if genuine.is_empty() => {}
            Move::Redrive { which, fresh } => {
                let n = which % genuine.len();
                if !genuine[n].taken {
                    redrive(&ingress, &mut genuine[n], *fresh, n).await?;
                }
            }
            Move::Redeliver { which } => {
                let n = which % genuine.len();
                let captured = &mut genuine[n];
                captured.copies += 1;
                ingress
                    .handle(request(
                        captured.route,
                        &captured.headers,
                        full(&captured.body),
                    ))
                    .await;
            }
            Move::OtherBody { which, body } => {
                let n = which % genuine.len();
                let body = bytes_of(body, &genuine);
                let captured = &mut genuine[n];
                captured.copies += usize::from(body == captured.body);
                ingress
                    .handle(request(captured.route, &captured.headers, full(&body)))
                    .await;
            }
            Move::OtherRoute { which, body } => {
                let captured = &genuine[which % genuine.len()];
                let body = body
                    .as_ref()
                    .map_or_else(|| captured.body.clone(), |body| bytes_of(body, &genuine));
                ingress
                    .handle(request(
                        captured.route.other(),
                        &captured.headers,
                        full(&body),
                    ))
                    .await;
            }
            Move::EdgeTrickle {
                which,
                other_route,
                body,
                trickle_ms,
            } => {
                let n = which % genuine.len();
                let body = bytes_of(body, &genuine);
                let captured = &mut genuine[n];
                let last_second = captured.timestamp + TOLERANCE_SECONDS;
                let wait = last_second - relay_seconds();
                if wait >= 0 {
                    // Into the window's last second (half way through it).
                    let target =
                        UNIX_EPOCH + Duration::from_millis((last_second * 1000 + 500) as u64);
                    if let Ok(ahead) = target.duration_since(relay_clock()) {
                        tokio::time::sleep(ahead).await;
                    }
                }
                let route = if *other_route {
                    captured.route.other()
                } else {
                    captured.route
                };
                captured.copies += usize::from(route == captured.route && body == captured.body);
                let trickled = Trickle::new(&body, Duration::from_millis(*trickle_ms));
                ingress
                    .handle(request(route, &captured.headers, trickled))
                    .await;
            }
        }
    }
    // The broker is back: Authvia redrives what it was not answered 2xx for, and gets it.
    set_broker(&ingress, Broker::Up);
    for (n, delivery) in genuine.iter_mut().enumerate() {
        if !delivery.taken {
            let status = redrive(&ingress, delivery, n % 2 == 0, n).await?;
            prop_assert_eq!(status, 200, "a redrive once the broker is back");
        }
    }
    let published = ingress.publisher().published();
    for (topic, record) in &published {
        let sent = genuine.iter().any(|delivery| {
            delivery.route.topic() == topic && delivery.body[..] == record.value[..]
        });
        prop_assert!(
            sent,
            "a record Authvia did not send on {topic}: {:?}",
            String::from_utf8_lossy(&record.value)
        );
    }
    for delivery in &genuine {
        let written = published
            .iter()
            .filter(|(topic, record)| {
                topic == delivery.route.topic() && record.value[..] == delivery.body[..]
            })
            .count();
        prop_assert!(
            written <= 1 + delivery.copies,
            "written {} times with {} copies: a redrive wrote again",
            written,
            delivery.copies
        );
    }
    Ok(())
}

/// Authvia retries the `n`th delivery with its original headers or signed afresh: never 401.
async fn redrive(
    ingress: &Ingress<Memory>,
    delivery: &mut Genuine,
    fresh: bool,
    n: usize,
) -> Result<u16, TestCaseError> {
    let headers = if fresh {
        let value = format!("authvia-{n}-retry-{}", rand_suffix());
        signature::signed_headers(SECRET, &value, relay_seconds()).unwrap()
    } else {
        delivery.headers.clone()
    };
    let status = answered(ingress, delivery, &headers).await?;
    prop_assert_ne!(
        status,
        401,
        "Authvia's redrive was refused (fresh signing: {})",
        fresh
    );
    Ok(status)
}

/// A counter for fresh signings' values within the thread's cases.
fn rand_suffix() -> u64 {
    thread_local! {
        static NEXT: Cell<u64> = const { Cell::new(0) };
    }
    NEXT.with(|next| {
        next.set(next.get() + 1);
        next.get()
    })
}

fn bytes_of(body: &Forged, genuine: &[Genuine]) -> Vec<u8> {
    match body {
        Forged::Own(bytes) => bytes.clone(),
        Forged::Genuine(which) => genuine[which % genuine.len()].body.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_record_is_a_body_authvia_sent_on_the_route_it_sent_it_to(
        moves in prop::collection::vec(a_move(), 1..24)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            BASE.with(|base| base.set(Some((SystemTime::now(), Instant::now()))));
            play(&moves).await
        })?;
    }
}
