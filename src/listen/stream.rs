//! A connection's socket shared between hyper and the request it serves,
//! so that a request notices its client leave without hyper reading ahead.
//!
//! hyper finds a client gone mid-request by reading from the socket. It reads
//! into a fresh buffer of 8 KB, because the one the request head came in is
//! still lent to the request's header values. A long poll kept both buffers
//! for its whole wait: 8 KB more per watcher, doing nothing. With hyper's
//! half-close mode on, hyper doesn't read mid-request. Instead, [`gone`]
//! peeks at the socket: no buffer, and any byte it sees stays for hyper.
//! The request is dropped when it sees the end, as hyper dropped it before.

use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A socket that hyper reads and writes while requests keep a handle on it.
pub(super) struct Shared(pub(super) Arc<TcpStream>);

impl AsyncRead for Shared {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            // Into the caller's uninitialised memory, as `TcpStream` itself
            // reads: zeroing it first would make every page of hyper's
            // buffer resident.
            match self.0.try_read_buf(buf) {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Shared {
    /// `write` once the socket takes bytes (a `WouldBlock` waits again).
    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        write: impl Fn(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match write(&self.0) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

impl AsyncWrite for Shared {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |s| s.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |s| s.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(Shutdown::Write))
    }
}

/// Ends when the client has closed or reset the connection. Never ends
/// once a byte of a next request waits (a pipelined request, or the rest
/// of a body the handler has not read): hyper reads it when it is ready.
pub(super) async fn gone(stream: Arc<TcpStream>) {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// [`gone`], boxed so that a response body can hold it.
pub(super) type Gone = Pin<Box<dyn Future<Output = ()> + Send>>;
