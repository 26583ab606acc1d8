//! The request pipeline: everything one delivery meets, from the socket to its answer.
//!
//! In the order of a request: [`server`] accepts the connection and bounds it (count,
//! deadlines, buffers); [`http`] is the handler — [`route`] picks the route, [`body_budget`]
//! bounds the bytes all bodies hold at once, [`signature`] authenticates (with [`replay`]'s
//! guard and [`redrive`]'s memory of deliveries answered 5xx), [`webhook`] parses, [`record`]
//! builds the record and picks its topic, [`publish`] hands it to a publisher and waits for
//! the acknowledgement; [`response`] answers, mapping every [`error`] in one place; [`access`]
//! writes the request's one log line and its span; [`metrics`] counts each step;
//! [`traceparent`] carries the sender's trace into the record; [`warning`] keeps a warning
//! that every request would repeat (a full memory) to one line a minute.

pub mod access;
pub mod body_budget;
pub mod error;
pub mod http;
pub mod metrics;
pub mod publish;
pub mod record;
pub mod redrive;
pub mod replay;
pub mod response;
pub mod route;
pub mod server;
pub mod signature;
pub mod traceparent;
pub mod warning;
pub mod webhook;
