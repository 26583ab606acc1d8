//! Authvia's disable callback: after 50 failed attempts of one event Authvia disables the whole
//! Subscription and calls its `disableCallbackURL` with `GET ?id=<subscription>&timestamp=<epoch>`.
//! From then on nothing reaches Kafka until someone re-enables it, so the relay logs it loudly
//! and counts it for an alert. The call is not signed: it only ever logs and counts.

/// What the callback says, cleaned for a log line (the query is attacker-controlled).
#[derive(Debug, PartialEq, Eq)]
pub struct Disabled {
    /// The Subscription's id, if it looks like one.
    pub subscription: Option<String>,
    /// When Authvia disabled it (Unix seconds), if given as a number.
    pub timestamp: Option<i64>,
}

/// The longest subscription id kept for the log.
const MAX_ID_LEN: usize = 128;

impl Disabled {
    /// Reads `id` and `timestamp` from the query string; anything else is ignored.
    pub fn from_query(query: Option<&str>) -> Self {
        let mut disabled = Disabled {
            subscription: None,
            timestamp: None,
        };
        for (name, value) in query
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.split_once('='))
        {
            match name {
                "id" if is_plain_id(value) => disabled.subscription = Some(value.to_owned()),
                "timestamp" => disabled.timestamp = value.parse().ok(),
                _ => {}
            }
        }
        disabled
    }
}

/// Letters, digits, `-`, `_`, `.` and `:` only, and not too long: nothing a log line or a
/// terminal could misread.
fn is_plain_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_subscription_and_the_time() {
        let disabled = Disabled::from_query(Some("id=sub_8f2c-01&timestamp=1767225600"));
        assert_eq!(
            disabled,
            Disabled {
                subscription: Some("sub_8f2c-01".into()),
                timestamp: Some(1_767_225_600)
            }
        );
    }

    #[test]
    fn drops_what_is_not_plain() {
        let long = format!("id={}", "a".repeat(MAX_ID_LEN + 1));
        for query in [
            Some("id=%0d%0aforged&timestamp=soon"),
            Some("id="),
            Some(long.as_str()),
            None,
        ] {
            assert_eq!(
                Disabled::from_query(query),
                Disabled {
                    subscription: None,
                    timestamp: None
                },
                "{query:?}"
            );
        }
    }
}
