//! The per-connection timers hyper doesn't have: a connection's socket
//! wrapped so that reading and writing can time out by what the connection
//! is doing.
//!
//! Reads are budgeted only while no request is in flight, that is while the
//! server waits for a request head:
//! - on a new connection, [`Limits::header_read_timeout`] from the accept;
//! - on a kept-alive one, [`Limits::idle_timeout`] from the end of the last
//!   response until the next request's first byte, then
//!   [`Limits::header_read_timeout`] from that byte to the end of the head.
//!
//! While a response is being produced nothing is read on a timer: a long
//! poll or an event stream may stay silent for minutes. A request body is
//! read by its handler, which bounds it (the daemon's request timeout, the
//! simulator's body read timeout).
//!
//! Writes are budgeted by progress, never by total duration: a write the
//! socket accepts no byte of for [`Limits::write_timeout`] fails, which
//! closes the connection. An event stream that sends a line an hour lives
//! on; a client that stops reading is cut once the socket buffers are full.
//!
//! hyper's own header timer can't do this: it starts when the connection
//! starts waiting for a head, so it can't tell an idle keep-alive from a
//! slow head.

use super::Limits;
use super::stream::Gone;
use axum::body::{Body, Bytes, HttpBody};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Requests of one connection whose responses are not finished yet, how
/// many have started in all, and who to wake when the last one finishes.
#[derive(Clone, Default)]
pub(super) struct InFlight(Arc<Counts>);

#[derive(Default)]
struct Counts {
    active: AtomicUsize,
    started: AtomicUsize,
    /// The connection's task as of its last read. hyper doesn't read again
    /// when a response ends if its last read found nothing (it waits for the
    /// socket), so the idle timer would never start: this wakes it.
    reader: parking_lot::Mutex<Option<Waker>>,
}

impl InFlight {
    /// Counts a request until the returned guard drops.
    pub(super) fn start(&self) -> Guard {
        self.0.started.fetch_add(1, Ordering::SeqCst);
        self.0.active.fetch_add(1, Ordering::SeqCst);
        Guard(self.0.clone())
    }

    /// Requests in flight, and started in all.
    fn counts(&self) -> (usize, usize) {
        (
            self.0.active.load(Ordering::SeqCst),
            self.0.started.load(Ordering::SeqCst),
        )
    }

    fn register(&self, waker: &Waker) {
        let mut reader = self.0.reader.lock();
        if !reader.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *reader = Some(waker.clone());
        }
    }
}

/// One request in flight; dropped with the response body (when hyper has
/// taken its last frame, or the connection ends).
pub(super) struct Guard(Arc<Counts>);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1
            && let Some(w) = self.0.reader.lock().take()
        {
            w.wake();
        }
    }
}

/// A response body that holds its request's [`Guard`], and ends in an
/// error when its client leaves while it has nothing to send (an event
/// stream between events; see `stream`).
pub(super) struct Tracked {
    body: Body,
    _guard: Guard,
    stream: Arc<TcpStream>,
    /// Started the first time the body has nothing to send.
    gone: Option<Gone>,
}

impl Tracked {
    pub(super) fn wrap(body: Body, guard: Guard, stream: Arc<TcpStream>) -> Body {
        Body::new(Tracked {
            body,
            _guard: guard,
            stream,
            gone: None,
        })
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Pending => {
                let stream = &this.stream;
                let gone = this
                    .gone
                    .get_or_insert_with(|| Box::pin(super::stream::gone(stream.clone())));
                match gone.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(
                        "the client closed the connection mid-response",
                    )))),
                    Poll::Pending => Poll::Pending,
                }
            }
            r => r,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What the read side waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    /// The first request's head, timed from the accept.
    First,
    /// A request is in flight: no read timer.
    Busy,
    /// Between requests: the next one's first byte.
    Idle,
    /// The rest of a head whose first byte came.
    Head,
}

/// A socket whose reads and writes time out as the module doc says.
pub(super) struct Budgeted<S> {
    io: S,
    limits: Limits,
    in_flight: InFlight,
    /// Requests started when the read side last looked.
    seen: usize,
    reading: Reading,
    read_timer: Pin<Box<Sleep>>,
    /// Whether `write_timer` runs (a write is waiting for room).
    write_stalled: bool,
    write_timer: Pin<Box<Sleep>>,
}

fn timed_out(what: &str, after: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} for {} s", after.as_secs_f64()),
    )
}

impl<S> Budgeted<S> {
    pub(super) fn new(io: S, limits: Limits, in_flight: InFlight) -> Self {
        Budgeted {
            io,
            limits,
            in_flight,
            seen: 0,
            reading: Reading::First,
            read_timer: Box::pin(tokio::time::sleep(limits.header_read_timeout)),
            write_stalled: false,
            write_timer: Box::pin(tokio::time::sleep(limits.write_timeout)),
        }
    }

    /// Moves the read side on after a read returned `got_bytes`
    /// (`None`: nothing yet).
    fn track_read(&mut self, got_bytes: Option<bool>) {
        let (active, started) = self.in_flight.counts();
        if active > 0 {
            self.reading = Reading::Busy;
            return;
        }
        // A request came and went since the last look (hyper need not read
        // while it answers): the connection is idle from now.
        if started != self.seen {
            self.seen = started;
            self.reading = Reading::Busy;
        }
        match (self.reading, got_bytes) {
            (Reading::Busy | Reading::Idle, Some(true)) => self.arm_read(Reading::Head),
            (Reading::Busy, _) => self.arm_read(Reading::Idle),
            _ => {}
        }
    }

    fn arm_read(&mut self, reading: Reading) {
        let budget = match reading {
            Reading::Idle => self.limits.idle_timeout,
            _ => self.limits.header_read_timeout,
        };
        self.reading = reading;
        self.read_timer.as_mut().reset(Instant::now() + budget);
    }

    /// After a write returned `Pending`: starts the stall timer if it isn't
    /// running, and fails once it has run out.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if !self.write_stalled {
            self.write_stalled = true;
            let deadline = Instant::now() + self.limits.write_timeout;
            self.write_timer.as_mut().reset(deadline);
        }
        ready!(self.write_timer.as_mut().poll(cx));
        Poll::Ready(timed_out(
            "the client took no byte of the response",
            self.limits.write_timeout,
        ))
    }

    /// What a write returned, with the stall timer applied.
    fn on_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
        progressed: impl Fn(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(Ok(v)) => {
                if progressed(&v) {
                    self.write_stalled = false;
                }
                Poll::Ready(Ok(v))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.poll_stall(cx).map(Err),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Budgeted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.track_read(Some(buf.filled().len() > before));
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.in_flight.register(cx.waker());
                this.track_read(None);
                if this.reading == Reading::Busy {
                    return Poll::Pending;
                }
                ready!(this.read_timer.as_mut().poll(cx));
                let (what, after) = if this.reading == Reading::Idle {
                    ("no new request", this.limits.idle_timeout)
                } else {
                    ("no whole request head", this.limits.header_read_timeout)
                };
                Poll::Ready(Err(timed_out(what, after)))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Budgeted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.on_write(cx, r, |n| *n > 0)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.on_write(cx, r, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.on_write(cx, r, |_| true)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.on_write(cx, r, |_| true)
    }
}
