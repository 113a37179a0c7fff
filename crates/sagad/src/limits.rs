//! Per-call limits at the edge, as a tower layer in front of every service:
//!
//! - **Message size.** A request message longer than the limit (`max_payload_bytes` plus room for the
//!   other fields) is refused with `RESOURCE_EXHAUSTED` as soon as its length prefix arrives, before
//!   its body is buffered. (tonic's own limit would answer `OUT_OF_RANGE`, which a client reads as "you
//!   asked for something past the end", not "too big".)
//! - **Undecodable requests.** tonic answers a request it cannot decode with `INTERNAL`; for a server
//!   that is the caller's fault, so it becomes `INVALID_ARGUMENT`, naming protobuf's nesting limit when
//!   that is what was hit (a payload nested too deep).
//! - **Server-side deadline.** A call whose answer (its response headers: a unary call's whole answer,
//!   a stream's start) is not ready within `limits.rpc_timeout` is cancelled with `DEADLINE_EXCEEDED`.
//!
//! A call answered with an error status is logged here, at debug and in the call's span: a refused
//! request is the caller's business (it has the status), not an incident.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use crate::status::{bad_request, over_limit, timed_out};
use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use tonic::body::Body;
use tonic::codegen::Bytes;
use tonic::{Code, Status};
use tracing::debug;

/// Length of a gRPC message prefix: a compression flag and a big-endian u32 length.
const PREFIX_LEN: usize = 5;

/// How deep prost decodes nested messages; JSON in a `Struct` uses about three per level.
const PROTOBUF_RECURSION_LIMIT: usize = 100;

/// The layer; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LimitsLayer {
    /// Largest request message, in bytes.
    pub max_message_bytes: usize,
    /// Longest a call may take to answer.
    pub rpc_timeout: Duration,
}

impl<S> tower::Layer<S> for LimitsLayer {
    type Service = Limits<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Limits {
            limits: *self,
            inner,
        }
    }
}

/// The service [`LimitsLayer`] makes.
#[derive(Debug, Clone)]
pub(crate) struct Limits<S> {
    limits: LimitsLayer,
    inner: S,
}

impl<S> tower::Service<http::Request<Body>> for Limits<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let LimitsLayer {
            max_message_bytes,
            rpc_timeout,
        } = self.limits;
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let request = request.map(|body| {
            Body::new(SizeLimited {
                inner: body,
                limit: max_message_bytes,
                prefix: MessagePrefixes::default(),
            })
        });
        // The instance that was polled ready serves this call; its clone the next one.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move {
            let response = match tokio::time::timeout(rpc_timeout, inner.call(request)).await {
                Ok(response) => response.map(decode_errors_are_the_callers),
                Err(_) => Ok(timed_out(format!(
                    "{method} did not finish within {rpc_timeout:?} on the server (limits.rpc_timeout)"
                ))
                .into_http()),
            };
            if let Ok(response) = &response {
                log_refusal(response);
            }
            response
        })
    }
}

/// Logs an answer that is an error status (a trailers-only response carries it in its headers).
fn log_refusal(response: &http::Response<Body>) {
    if let Some(status) = Status::from_header_map(response.headers())
        && status.code() != Code::Ok
    {
        debug!(code = ?status.code(), error = status.message(), "call refused");
    }
}

/// Rewrites tonic's `INTERNAL` answer to a request it could not decode into `INVALID_ARGUMENT`.
fn decode_errors_are_the_callers(response: http::Response<Body>) -> http::Response<Body> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    if status.code() != Code::Internal
        || !status
            .message()
            .starts_with("failed to decode Protobuf message")
    {
        return response;
    }
    let message = if status.message().contains("recursion limit reached") {
        format!(
            "the request nests deeper than protobuf's decoding limit of {PROTOBUF_RECURSION_LIMIT} \
             nested messages (each level of a JSON payload takes about three): flatten the payload"
        )
    } else {
        format!(
            "the request is not a valid protobuf message: {}",
            status.message()
        )
    };
    bad_request(message).into_http()
}

/// A request body that fails with `RESOURCE_EXHAUSTED` once a message's length prefix says it is over
/// `limit`, before the message itself is read.
struct SizeLimited {
    inner: Body,
    limit: usize,
    prefix: MessagePrefixes,
}

impl http_body::Body for SizeLimited {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            let limit = self.limit;
            if let Some(Err(len)) = data.map(|bytes| self.prefix.feed(bytes, limit)) {
                return Poll::Ready(Some(Err(over_limit(format!(
                    "request message is {len} bytes; the limit is {limit} bytes \
                     (max_payload_bytes plus room for the other fields)"
                )))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Follows the gRPC message framing of a request body, frame by frame, to learn each message's length.
#[derive(Debug, Default)]
struct MessagePrefixes {
    /// Prefix bytes of the next message collected so far.
    prefix: Vec<u8>,
    /// Body bytes of the current message still to come.
    remaining: usize,
}

impl MessagePrefixes {
    /// Consumes `bytes`; `Err(len)` for the first message whose length is over `limit`.
    fn feed(&mut self, mut bytes: &[u8], limit: usize) -> Result<(), usize> {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(bytes.len());
                self.remaining -= skip;
                bytes = &bytes[skip..];
                continue;
            }
            let take = (PREFIX_LEN - self.prefix.len()).min(bytes.len());
            self.prefix.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.prefix.len() == PREFIX_LEN {
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]) as usize;
                self.prefix.clear();
                if len > limit {
                    return Err(len);
                }
                self.remaining = len;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{Layer, Service};

    use super::*;

    /// A handler that takes a minute to answer.
    #[derive(Clone)]
    struct Slow;

    impl Service<http::Request<Body>> for Slow {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(http::Response::new(Body::empty()))
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_outlasts_the_rpc_timeout_is_deadline_exceeded() {
        let layer = LimitsLayer {
            max_message_bytes: 1024,
            rpc_timeout: Duration::from_secs(5),
        };
        let request = http::Request::builder()
            .uri("http://sagad/saga.v1.SagaCoordinator/ListSagas")
            .body(Body::empty())
            .expect("request");
        let started = tokio::time::Instant::now();
        let response = layer.layer(Slow).call(request).await.expect("answered");
        let status = Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(
            status.message().contains("ListSagas"),
            "{}",
            status.message()
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    fn message(len: usize) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&u32::try_from(len).expect("small").to_be_bytes());
        bytes.resize(PREFIX_LEN + len, 7);
        bytes
    }

    #[test]
    fn lengths_are_read_across_any_frame_split() {
        let mut body = message(10);
        body.extend(message(3));
        body.extend(message(20));
        for chunk in 1..body.len() {
            let mut prefixes = MessagePrefixes::default();
            // The body fails at its first error, so nothing is fed after it.
            let first_error = body
                .chunks(chunk)
                .map(|c| prefixes.feed(c, 15))
                .find(Result::is_err);
            assert_eq!(first_error, Some(Err(20)), "chunk {chunk}");
        }
        let mut prefixes = MessagePrefixes::default();
        assert_eq!(
            prefixes.feed(&message(15), 15),
            Ok(()),
            "at the limit is fine"
        );
    }
}
