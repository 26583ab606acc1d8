//! A request body delivered in chunks, then ended, broken or stalled as a client might: the
//! property tests and the handler fuzz target (`fuzz/`, through `#[path]`) both send it.

use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use hyper::body::{Body, Frame};

/// How a body ends after its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The body is complete.
    Complete,
    /// The connection breaks (hyper reports an error): the handler answers 400.
    Broken,
    /// The rest never arrives: the handler answers 408 at its deadline.
    Stalled,
}

/// `body` in chunks of `chunk` bytes (at least 1), then `end`.
pub struct Frames {
    chunks: VecDeque<Bytes>,
    end: End,
}

impl Frames {
    pub fn new(body: &[u8], chunk: usize, end: End) -> Self {
        let chunks = body
            .chunks(chunk.max(1))
            .map(Bytes::copy_from_slice)
            .collect();
        Self { chunks, end }
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match this.end {
            End::Complete => Poll::Ready(None),
            End::Broken => {
                // Once: a body reports its error and then ends.
                this.end = End::Complete;
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "client went away",
                ))))
            }
            // The handler's deadline is a timer, which wakes it; nothing here ever will.
            End::Stalled => Poll::Pending,
        }
    }
}
