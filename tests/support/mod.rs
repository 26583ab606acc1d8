//! What the integration tests (`tests/api`) and the fault matrix (`tests/faults`) share, each
//! including this folder (`#[path = "../support/mod.rs"] mod support;`): bounded waits, the
//! relay's command line, and the relay binary run as a child process. The property tests and the
//! benches include only [`relay_args`].

// Each including crate uses what it needs.
#![allow(dead_code)]

pub mod relay_args;
pub mod relay_process;
pub mod wait;
