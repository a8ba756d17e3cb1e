//! Body types on both sides of the proxy: streamed bodies that count bytes and record route activity, and
//! small fixed bodies for answers the proxy writes itself.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::metrics::ProxyMetrics;
use crate::routes::ActivityClock;

/// A streamed body passed through frame by frame (so back-pressure flows end to end and nothing is
/// buffered), counting data bytes and touching the route's activity clock on every data frame.
#[derive(Debug)]
pub struct MeteredBody {
    inner: Incoming,
    activity: Option<Arc<ActivityClock>>,
    metrics: Arc<ProxyMetrics>,
    counter: fn(&ProxyMetrics) -> &AtomicU64,
}

impl MeteredBody {
    pub(crate) fn new(
        inner: Incoming,
        activity: Option<Arc<ActivityClock>>,
        metrics: Arc<ProxyMetrics>,
        counter: fn(&ProxyMetrics) -> &AtomicU64,
    ) -> Self {
        Self {
            inner,
            activity,
            metrics,
            counter,
        }
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            (this.counter)(&this.metrics).fetch_add(data.len() as u64, Ordering::Relaxed);
            if let Some(activity) = &this.activity {
                activity.touch();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body of a response to a client: an upstream's streamed body or one the proxy wrote itself.
#[derive(Debug)]
pub enum ProxyBody {
    /// Streamed from an upstream (a target or the error target).
    Streamed(MeteredBody),
    /// A complete body written by the proxy (errors, health, API answers); `None` once sent.
    Fixed(Option<Bytes>),
}

impl ProxyBody {
    /// A body with these bytes.
    pub fn fixed(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ProxyBody::Fixed(if bytes.is_empty() { None } else { Some(bytes) })
    }

    /// An empty body.
    pub fn empty() -> Self {
        ProxyBody::Fixed(None)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Streamed(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Fixed(bytes) => {
                Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Streamed(body) => body.is_end_stream(),
            ProxyBody::Fixed(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Streamed(body) => body.size_hint(),
            ProxyBody::Fixed(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
