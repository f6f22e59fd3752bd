//! A cap on the API's open connections: each connection holds a place of
//! a semaphore for as long as it is open; when all are taken, accepting
//! waits (new clients wait in the kernel's backlog), so slow or idle
//! clients can hold at most that many descriptors.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

/// Most open API connections.
pub const MAX_CONNECTIONS: usize = 4096;

/// A connection and its place.
pub struct Capped<S> {
    inner: S,
    _place: OwnedSemaphorePermit,
}

impl<S> Capped<S> {
    pub fn new(inner: S, place: OwnedSemaphorePermit) -> Capped<S> {
        Capped {
            inner,
            _place: place,
        }
    }
}

/// Waits for a free place.
pub async fn place(places: &Arc<tokio::sync::Semaphore>) -> Option<OwnedSemaphorePermit> {
    Arc::clone(places).acquire_owned().await.ok()
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A plain TCP listener whose connections are [`Capped`] (TCP_NODELAY
/// set).
pub struct CappedListener {
    pub inner: tokio::net::TcpListener,
    pub places: Arc<tokio::sync::Semaphore>,
}

impl axum::serve::Listener for CappedListener {
    type Io = Capped<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some(place) = place(&self.places).await else {
                std::future::pending::<()>().await;
                continue;
            };
            match self.inner.accept().await {
                Ok((s, peer)) => {
                    let _ = s.set_nodelay(true);
                    return (Capped::new(s, place), peer);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "API accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
