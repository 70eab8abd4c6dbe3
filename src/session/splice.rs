//! Zero-copy pass-through for plaintext on both sides: the part of a
//! streamed frame not yet read moves socket → pipe → socket with
//! `splice(2)`, and never enters kgate's memory. Only frames no filter
//! needs take this path, and only when both sides are plain TCP.
//!
//! The pipe is filled only while empty and drained completely before the
//! next fill, so an `EAGAIN` always belongs to the socket being waited on
//! and tokio's readiness stays truthful.

use crate::protocol::frame::{CopyError, FrameError};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipe capacity asked for; Linux's default maximum for unprivileged
/// processes is 1 MiB.
const PIPE_BYTES: usize = 1 << 20;

/// A stream half that may expose its TCP socket for splicing.
pub trait AsTcp {
    fn tcp(&self) -> Option<&TcpStream>;
}

impl AsTcp for tokio::net::tcp::ReadHalf<'_> {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl AsTcp for tokio::net::tcp::WriteHalf<'_> {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl<T> AsTcp for tokio::io::ReadHalf<T> {
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl<T> AsTcp for tokio::io::WriteHalf<T> {
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

/// One direction's pipe, created on first use.
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    cap: usize,
}

impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into `fds` on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ on our own pipe; failure leaves the default.
        let got = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES as libc::c_int) };
        let cap = if got > 0 { got as usize } else { 64 * 1024 };
        Ok(Pipe { r, w, cap })
    }
}

fn splice(from: i32, to: i32, n: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: plain descriptors we own or borrow; null offsets (streams).
    let r = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), n, flags) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Moves exactly `n` bytes from `from` to `to` through `pipe`.
pub async fn splice_exact(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    mut n: usize,
) -> Result<(), CopyError> {
    while n > 0 {
        // Fill: the pipe is empty, so EAGAIN is the source's.
        let want = n.min(pipe.cap);
        let got = loop {
            from.readable()
                .await
                .map_err(|e| CopyError::Read(FrameError::Io(e)))?;
            match from.try_io(Interest::READABLE, || {
                splice(from.as_raw_fd(), pipe.w.as_raw_fd(), want)
            }) {
                Ok(0) => return Err(CopyError::Read(FrameError::Truncated { got: 0, want: n })),
                Ok(k) => break k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(CopyError::Read(FrameError::Io(e))),
            }
        };
        n -= got;
        // Drain: the pipe holds data, so EAGAIN is the destination's.
        let mut left = got;
        while left > 0 {
            to.writable().await.map_err(CopyError::Write)?;
            match to.try_io(Interest::WRITABLE, || {
                splice(pipe.r.as_raw_fd(), to.as_raw_fd(), left)
            }) {
                Ok(0) => return Err(CopyError::Write(io::ErrorKind::WriteZero.into())),
                Ok(k) => left -= k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(CopyError::Write(e)),
            }
        }
    }
    Ok(())
}

/// Passes the next `n` bytes of the current frame from `r` to `w`: what is
/// buffered is written, and the rest is spliced when `enabled` and both
/// sides are plain TCP, else copied through the reader's bounded buffer.
pub async fn pass<R, W>(
    r: &mut crate::protocol::frame::FrameReader<R>,
    w: &mut W,
    n: usize,
    pipe: &mut Option<Pipe>,
    enabled: bool,
) -> Result<(), CopyError>
where
    R: tokio::io::AsyncRead + Unpin + AsTcp,
    W: tokio::io::AsyncWrite + Unpin + AsTcp,
{
    use tokio::io::AsyncWriteExt;
    let both_tcp = r.get_ref().tcp().is_some() && w.tcp().is_some();
    if !enabled || !both_tcp || r.buffered().len() >= n {
        return r.copy_to(n, w).await;
    }
    if pipe.is_none() {
        *pipe = Pipe::new().ok();
    }
    let Some(p) = pipe.as_ref() else {
        return r.copy_to(n, w).await;
    };
    let k = r.buffered().len();
    if k > 0 {
        let head = r.take(k);
        w.write_all(&head).await.map_err(CopyError::Write)?;
    }
    crate::metrics::get()
        .frames_spliced
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match (r.get_ref().tcp(), w.tcp()) {
        (Some(from), Some(to)) => splice_exact(from, to, p, n - k).await,
        _ => r.copy_to(n - k, w).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn exactly_n_bytes_move_and_the_rest_stays() {
        let (mut src_w, src_r) = pair().await;
        let (dst_w, mut dst_r) = pair().await;
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let tail = b"next frame".to_vec();
        let sent = [data.clone(), tail.clone()].concat();
        let writer = tokio::spawn(async move { src_w.write_all(&sent).await.unwrap() });
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 5_000_000];
            dst_r.read_exact(&mut got).await.unwrap();
            got
        });
        let pipe = Pipe::new().unwrap();
        splice_exact(&src_r, &dst_w, &pipe, data.len()).await.unwrap();
        assert_eq!(reader.await.unwrap(), data);
        writer.await.unwrap();
        let mut rest = vec![0u8; tail.len()];
        let mut s = src_r;
        s.read_exact(&mut rest).await.unwrap();
        assert_eq!(rest, tail, "bytes after the frame are left for the next read");
    }

    #[tokio::test]
    async fn a_source_that_closes_early_is_a_truncation() {
        let (mut src_w, src_r) = pair().await;
        let (dst_w, _dst_r) = pair().await;
        src_w.write_all(&[1, 2, 3]).await.unwrap();
        drop(src_w);
        let pipe = Pipe::new().unwrap();
        let e = splice_exact(&src_r, &dst_w, &pipe, 10).await.unwrap_err();
        assert!(matches!(e, CopyError::Read(FrameError::Truncated { .. })), "{e}");
    }
}
