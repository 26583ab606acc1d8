//! W3C Trace Context `traceparent`: carried from the request into the record as the
//! CloudEvents distributed-tracing extension (`ce_traceparent`), so a consumer can continue
//! the trace the sender started.

use std::fmt;

use rand::Rng;

/// A parsed `traceparent` (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; all-zero ids are invalid per the spec.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let mut parent = Self {
            trace_id: [0; 16],
            span_id: [0; 8],
            flags: 0,
        };
        hex::decode_to_slice(trace, &mut parent.trace_id).ok()?;
        hex::decode_to_slice(span, &mut parent.span_id).ok()?;
        let mut flag = [0u8; 1];
        hex::decode_to_slice(flags, &mut flag).ok()?;
        parent.flags = flag[0];
        let lowercase = [trace, span, flags]
            .iter()
            .all(|p| !p.bytes().any(|b| b.is_ascii_uppercase()));
        let nonzero = parent.trace_id != [0; 16] && parent.span_id != [0; 8];
        (lowercase && nonzero).then_some(parent)
    }

    /// A new trace, sampled, for requests that carry none.
    pub fn fresh() -> Self {
        let mut rng = rand::rng();
        Self {
            trace_id: nonzero(&mut rng),
            span_id: nonzero(&mut rng),
            flags: 0x01,
        }
    }

    /// The relay's own span within the same trace: same trace id and flags, a new span id.
    pub fn child(&self) -> Self {
        Self {
            span_id: nonzero(&mut rand::rng()),
            ..*self
        }
    }

    /// The trace id as 32 hex digits (logged to correlate with the sender).
    pub fn trace_id(&self) -> String {
        hex::encode(self.trace_id)
    }
}

fn nonzero<const N: usize>(rng: &mut impl Rng) -> [u8; N] {
    loop {
        let bytes: [u8; N] = rng.random();
        if bytes != [0; N] {
            return bytes;
        }
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_traceparent_round_trips() {
        assert_eq!(TraceParent::parse(EXAMPLE).unwrap().to_string(), EXAMPLE);
    }

    #[test]
    fn child_keeps_trace_and_flags_with_a_new_span() {
        let child = TraceParent::parse(EXAMPLE).unwrap().child().to_string();
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(child.ends_with("-01"));
        assert_ne!(child, EXAMPLE);
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn fresh_traceparent_is_valid() {
        let fresh = TraceParent::fresh().to_string();
        assert!(TraceParent::parse(&fresh).is_some(), "{fresh}");
    }
}
