//! The sender's side: signed headers (built by the library's one helper), requests with a
//! bound on the answer, and requests whose body is held back to keep them in flight.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bp_relay::ingress::signature;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use tokio::{net::TcpStream, sync::mpsc, task::JoinHandle};

use super::unique;

/// Far past every relay deadline: an answer that takes longer is a hang, and fails the test.
const ANSWER_BOUND: Duration = Duration::from_secs(30);

/// The headers Authvia would send now for a JSON body, signed with `secret`.
pub fn signed_headers(secret: &str) -> HeaderMap {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    signed_headers_at(secret, &unique("value"), now)
}

/// The headers of a signing of `value` at `timestamp` (Unix seconds) with `secret`.
pub fn signed_headers_at(secret: &str, value: &str, timestamp: i64) -> HeaderMap {
    let mut headers =
        signature::signed_headers(secret, value, timestamp).expect("the value is a header value");
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the text when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The `code` of an error answer.
    pub fn code(&self) -> String {
        self.json()["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code in {}", self.text()))
            .to_owned()
    }
}

/// POSTs `body` with `headers` (HTTP/1.1).
pub async fn post(url: &str, headers: HeaderMap, body: Vec<u8>) -> Answer {
    let mut request = Request::post(url)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    *request.headers_mut() = headers;
    send(request).await
}

/// Sends a request; the relay must answer within [`ANSWER_BOUND`].
pub async fn send(request: Request<Full<Bytes>>) -> Answer {
    try_send(request)
        .await
        .expect("the request reaches the relay")
}

/// Like [`send`], but a refused or reset connection is an `Err` instead of a panic (a request
/// that was not yet accepted when the relay began draining). A hang still fails.
pub async fn try_send(request: Request<Full<Bytes>>) -> Result<Answer, String> {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(ANSWER_BOUND, client.request(request))
        .await
        .expect("the relay answers within 30 s")
        .map_err(|error| format!("{error:?}"))?;
    read_answer(response).await
}

async fn read_answer<B>(response: http::Response<B>) -> Result<Answer, String>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|error| format!("{error:?}"))?
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// A request whose headers and first half of the body were sent; the relay is reading the
/// rest, so the request is in flight (counted, holding its `--max-inflight` permit).
pub struct HeldRequest {
    rest: Bytes,
    chunks: mpsc::Sender<Bytes>,
    answer: JoinHandle<Result<Answer, String>>,
}

/// POSTs `body` to `path` on its own connection, sending the headers and the first half of the
/// body only. The relay sees the request once its headers arrive: wait for that on a condition
/// (the in-flight gauge), then [`HeldRequest::finish`] it.
pub async fn hold(addr: SocketAddr, path: &str, headers: HeaderMap, body: Vec<u8>) -> HeldRequest {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the relay");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let body = Bytes::from(body);
    let (chunks, received) = mpsc::channel(2);
    let mut request = Request::post(path).body(ChannelBody(received)).unwrap();
    *request.headers_mut() = headers;
    request.headers_mut().insert(
        header::HOST,
        HeaderValue::from_str(&addr.to_string()).unwrap(),
    );
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let half = body.len() / 2;
    chunks
        .send(body.slice(..half))
        .await
        .expect("the connection takes the first half");
    let answer = tokio::spawn(async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| format!("{error:?}"))?;
        read_answer(response).await
    });
    HeldRequest {
        rest: body.slice(half..),
        chunks,
        answer,
    }
}

impl HeldRequest {
    /// Sends the rest of the body and reads the answer (bounded by [`ANSWER_BOUND`]). An
    /// `Err` is a connection the relay closed or reset.
    pub async fn finish(self) -> Result<Answer, String> {
        // A send error means the connection is gone already; the answer says why.
        let _ = self.chunks.send(self.rest).await;
        drop(self.chunks);
        tokio::time::timeout(ANSWER_BOUND, self.answer)
            .await
            .expect("the relay answers a held request within 30 s of its body's end")
            .expect("the request task")
    }
}

/// A request body fed chunk by chunk from a channel; it ends when the sender is dropped.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}
