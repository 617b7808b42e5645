//! Reading the first frame of a request body without losing it: the bytes read are put back in
//! front of the rest, so the request goes on (to the local handler or to the leader) unchanged.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body as _, Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;

use super::wire::{self, FirstFrame};

/// Reads `body` until it holds its first whole gRPC frame — or ends, fails, sends trailers, or
/// announces a message over `max` bytes (then the frame is never whole: the handler refuses the
/// message). Answers the bytes read, and the body to pass on in `body`'s place.
pub(super) async fn read_first_frame(mut body: Body, max: usize) -> (Bytes, Prefixed) {
    let mut buf = BytesMut::new();
    let mut prefixed = Prefixed::default();
    let ended = loop {
        match wire::first_frame(&buf) {
            FirstFrame::Incomplete(Some(need)) if need > max.saturating_add(wire::PREFIX) => {
                break false;
            }
            FirstFrame::Incomplete(_) => {}
            FirstFrame::Compressed | FirstFrame::Message(_) => break false,
        }
        match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => break true,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => buf.extend_from_slice(&data),
                Err(frame) => {
                    prefixed.trailers = frame.into_trailers().ok();
                    break true;
                }
            },
            Some(Err(status)) => {
                prefixed.error = Some(status);
                break true;
            }
        }
    };
    let head = buf.freeze();
    prefixed.head = (!head.is_empty()).then(|| head.clone());
    prefixed.rest = (!ended).then_some(body);
    (head, prefixed)
}

/// A request body whose start was read already: that start, then what came after it (trailers
/// or an error that ended the reading), then the rest of the body as it arrives.
#[derive(Debug, Default)]
pub(super) struct Prefixed {
    head: Option<Bytes>,
    trailers: Option<HeaderMap>,
    error: Option<Status>,
    /// `None` once the original body has ended (or failed).
    rest: Option<Body>,
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        if let Some(error) = self.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(rest).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.rest = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none()
            && self.trailers.is_none()
            && self.error.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let head = self.head.as_ref().map_or(0, |h| h.len() as u64);
        let rest = self
            .rest
            .as_ref()
            .map_or(SizeHint::with_exact(0), Body::size_hint);
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(head));
        }
        hint.set_lower(rest.lower().saturating_add(head));
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of `frames`, polled in order.
    fn of(frames: Vec<Result<Frame<Bytes>, Status>>) -> Body {
        struct Frames(std::vec::IntoIter<Result<Frame<Bytes>, Status>>);
        impl http_body::Body for Frames {
            type Data = Bytes;
            type Error = Status;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
                Poll::Ready(self.0.next())
            }
        }
        Body::new(Frames(frames.into_iter()))
    }

    /// Everything `body` gives: data as `d:<bytes>`, trailers as `t:<names>`, errors `e:<code>`.
    async fn drain(mut body: Prefixed) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            out.push(match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => format!("d:{}", String::from_utf8_lossy(&data)),
                    Err(frame) => {
                        let trailers = frame.into_trailers().unwrap();
                        let names: Vec<&str> = trailers.keys().map(|k| k.as_str()).collect();
                        format!("t:{}", names.join(","))
                    }
                },
                Err(status) => format!("e:{:?}", status.code()),
            });
        }
        out
    }

    fn data(bytes: &'static [u8]) -> Result<Frame<Bytes>, Status> {
        Ok(Frame::data(Bytes::from_static(bytes)))
    }

    #[tokio::test]
    async fn stops_reading_once_the_first_frame_is_whole() {
        let frames = vec![
            data(b"\0\0\0"),
            data(b"\0\x02h"),
            data(b"i\0"),
            data(b"rest"),
        ];
        let (head, rest) = read_first_frame(of(frames), 1024).await;
        assert_eq!(&head[..], b"\0\0\0\0\x02hi\0");
        assert_eq!(drain(rest).await, ["d:\0\0\0\0\x02hi\0", "d:rest"]);
    }

    #[tokio::test]
    async fn an_error_or_trailers_while_reading_come_after_the_bytes_read() {
        let frames = vec![data(b"\0\0\0"), Err(Status::cancelled("reset"))];
        let (head, rest) = read_first_frame(of(frames), 1024).await;
        assert_eq!(&head[..], b"\0\0\0");
        assert_eq!(drain(rest).await, ["d:\0\0\0", "e:Cancelled"]);

        let mut trailers = HeaderMap::new();
        trailers.insert("x-end", http::HeaderValue::from_static("1"));
        let frames = vec![data(b"\0\0"), Ok(Frame::trailers(trailers))];
        let (head, rest) = read_first_frame(of(frames), 1024).await;
        assert_eq!(&head[..], b"\0\0");
        assert_eq!(drain(rest).await, ["d:\0\0", "t:x-end"]);

        let (head, rest) = read_first_frame(of(vec![]), 1024).await;
        assert!(head.is_empty());
        assert!(http_body::Body::is_end_stream(&rest));
        assert!(drain(rest).await.is_empty());
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_not_read_further() {
        let frames = vec![data(b"\0\0\0\x04\0"), data(b"more")];
        let (head, rest) = read_first_frame(of(frames), 16).await;
        assert_eq!(head.len(), 5, "1024 bytes announced, 16 allowed");
        assert_eq!(drain(rest).await, ["d:\0\0\0\x04\0", "d:more"]);
    }
}
