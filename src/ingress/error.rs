//! The request-path error: every way a request to either listener can fail, with its HTTP
//! status and a stable code. Pure: no I/O, no logging. [`crate::ingress::response`] turns it into a
//! response in one place; the handler logs it once.

use http::StatusCode;

use crate::{
    ingress::publish::PublishError,
    ingress::redrive::RedrivePending,
    ingress::replay::{GuardFull, StoreError},
    ingress::signature::{AdmitError, SignatureError},
};

/// Seconds a sender should wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// A webhook request that did not end in a durable record.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No route at this path.
    #[error("nothing here; the routes are {routes}")]
    NotFound {
        /// The listener's routes, for the message.
        routes: &'static str,
    },
    /// The route exists but takes other methods only.
    #[error("this route accepts {allow} only")]
    MethodNotAllowed {
        /// The methods it takes: the `Allow` header.
        allow: &'static str,
    },
    /// The signature headers did not verify.
    #[error(transparent)]
    Unauthorized(#[from] SignatureError),
    /// The body is larger than `--max-body`.
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    /// The body could not be read (the client went away, or sent broken framing).
    #[error("request body could not be read")]
    BodyRead(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The body did not arrive before the request's deadline.
    #[error("request body was not received in time")]
    BodyTimeout,
    /// `--max-inflight` requests are being handled already.
    #[error("too many requests in flight")]
    Overloaded,
    /// Startup has not confirmed the topics yet (Kafka absent, or topics not created).
    #[error("starting: Kafka and the topics are not confirmed yet")]
    Starting,
    /// The request's next body bytes do not fit `--max-inflight-bytes`.
    #[error("too many request body bytes in flight")]
    OverloadedBytes,
    /// Kafka did not acknowledge the record.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The shared replay store did not answer: the body cannot be checked, so it is not taken.
    #[error(transparent)]
    ReplayStoreUnavailable(#[from] StoreError),
    /// The in-memory replay guard is full of signings still inside the window: a new signing
    /// is not taken rather than forget one that could carry a second body.
    #[error(transparent)]
    ReplayGuardFull(#[from] GuardFull),
    /// Another copy of this delivery waits for its record, which may still land: this one is
    /// not written meanwhile.
    #[error(transparent)]
    RedrivePending(#[from] RedrivePending),
}

impl From<AdmitError> for Error {
    fn from(error: AdmitError) -> Self {
        match error {
            AdmitError::Refused(reason) => Self::Unauthorized(reason),
            AdmitError::StoreUnavailable(error) => Self::ReplayStoreUnavailable(error),
            AdmitError::GuardFull(error) => Self::ReplayGuardFull(error),
        }
    }
}

impl Error {
    /// The HTTP status. 2xx is never here: an error never claims durability.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyRead(_) => StatusCode::BAD_REQUEST,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Overloaded
            | Self::OverloadedBytes
            | Self::Starting
            | Self::ReplayStoreUnavailable(_)
            | Self::ReplayGuardFull(_)
            | Self::RedrivePending(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Publish(error) if error.reason.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Publish(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code: JSON `code` field and log field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Unauthorized(reason) => reason.code(),
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::BodyRead(_) => "body_unreadable",
            Self::BodyTimeout => "body_timeout",
            Self::Overloaded => "overloaded",
            Self::Starting => "starting",
            Self::OverloadedBytes => "overloaded_bytes",
            Self::Publish(error) => error.reason.code(),
            Self::ReplayStoreUnavailable(_) => "replay_store_unavailable",
            Self::ReplayGuardFull(_) => "replay_guard_full",
            Self::RedrivePending(_) => "redrive_pending",
        }
    }

    /// The message for the sender: what to fix for 4xx, nothing internal for 5xx.
    pub fn public_message(&self) -> String {
        match self.status() {
            StatusCode::SERVICE_UNAVAILABLE => {
                "the delivery was not stored; retry later".to_owned()
            }
            status if status.is_server_error() => "the delivery was not stored".to_owned(),
            _ => self.to_string(),
        }
    }

    /// Seconds for a `Retry-After` header, on answers that invite a retry soon.
    pub fn retry_after(&self) -> Option<u32> {
        (self.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(RETRY_AFTER_SECONDS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::publish::FailureReason;

    fn publish(reason: FailureReason) -> Error {
        Error::Publish(PublishError::because(reason))
    }

    #[test]
    fn transient_kafka_failures_are_503_with_retry_after() {
        for reason in [
            FailureReason::Timeout,
            FailureReason::QueueFull,
            FailureReason::Transport,
        ] {
            let error = publish(reason);
            assert_eq!(
                error.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "{reason:?}"
            );
            assert_eq!(error.retry_after(), Some(RETRY_AFTER_SECONDS));
        }
    }

    #[test]
    fn terminal_kafka_failures_are_500_with_a_code_and_no_detail() {
        let error = publish(FailureReason::UnknownTopic);
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error.code(), "kafka_unknown_topic");
        assert_eq!(error.retry_after(), None);
        assert_eq!(error.public_message(), "the delivery was not stored");
    }

    #[test]
    fn an_exhausted_body_budget_is_503_with_retry_after_and_its_own_code() {
        let error = Error::OverloadedBytes;
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.code(), "overloaded_bytes");
        assert_eq!(error.retry_after(), Some(RETRY_AFTER_SECONDS));
    }

    #[test]
    fn a_full_replay_guard_is_503_with_retry_after_and_its_own_code() {
        let error = Error::from(AdmitError::from(GuardFull));
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.code(), "replay_guard_full");
        assert_eq!(error.retry_after(), Some(RETRY_AFTER_SECONDS));
    }

    #[test]
    fn signature_failures_are_401_with_the_reason_as_code() {
        let error = Error::from(SignatureError::StaleTimestamp);
        assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error.code(), "stale_timestamp");
    }
}
