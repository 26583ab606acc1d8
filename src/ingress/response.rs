//! Building responses: JSON bodies, and the one place where an [`Error`] becomes an answer,
//! `{"code": ..., "message": ...}` with its status and headers, on both listeners.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::ingress::error::Error;

/// The response body type of both listeners.
pub type Body = Full<Bytes>;

/// The answer for `error`: its status, `{"code", "message"}`, `Retry-After` on 503 and
/// `Allow` on 405.
pub fn error(error: &Error) -> Response<Body> {
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        code: &'a str,
        message: String,
    }
    let mut response = json(
        error.status(),
        &ErrorBody {
            code: error.code(),
            message: error.public_message(),
        },
    );
    if let Some(seconds) = error.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Error::MethodNotAllowed { allow } = error {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    response
}

/// A JSON response with `status`.
pub fn json(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    // Serialising these plain structs cannot fail; an empty body would still be a valid answer.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::publish::{FailureReason, PublishError};

    #[test]
    fn method_not_allowed_names_the_allowed_methods() {
        let response = error(&Error::MethodNotAllowed { allow: "POST" });
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "POST");
    }

    #[test]
    fn a_503_invites_a_retry_and_reveals_nothing() {
        let response = error(&Error::Publish(PublishError::because(
            FailureReason::Transport,
        )));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
