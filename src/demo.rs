//! The demo side: [`sign`], the client that signs and sends a delivery like Authvia
//! (`bp-relay sign`), and [`samples`], the sample deliveries of `docs/examples/` that the
//! demo, the tests and the benches send.

pub mod samples;
pub mod sign;
