//! Zero-copy forwarding of a body from one socket to another through a pipe (Linux `splice(2)`): the
//! kernel moves page references instead of copying every byte into the proxy and back out.

use std::io;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::routes::ActivityClock;

/// Requested pipe capacity; the kernel may grant less (`/proc/sys/fs/pipe-max-size`). 64 KiB and 1 MiB
/// measured no better at 1 MiB bodies, and a larger pipe pins more memory per transfer.
const PIPE_SIZE: i32 = 256 * 1024;
/// What every Linux pipe holds by default.
const DEFAULT_PIPE_SIZE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SpliceError {
    /// No pipe, or the sockets do not support splicing; nothing was moved.
    #[error("splicing is not supported for these sockets")]
    Unsupported,
    /// Reading from the upstream failed or it closed early.
    #[error("reading the body from the upstream failed")]
    Upstream(#[source] io::Error),
    /// Writing to the client failed.
    #[error("writing the body to the client failed")]
    Client(#[source] io::Error),
}

/// Moves exactly `length` bytes from `from` to `to`, adding to `moved` as bytes reach `to` and touching
/// `activity` as they arrive.
pub(crate) async fn forward_exact(
    from: &TcpStream,
    to: &TcpStream,
    mut length: u64,
    activity: Option<&ActivityClock>,
    moved: &mut u64,
) -> Result<(), SpliceError> {
    let (pipe_read, pipe_write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
            .map_err(|_| SpliceError::Unsupported)?;
    // Growing the pipe fails for an unprivileged user past `/proc/sys/fs/pipe-user-pages-soft` (64 MiB
    // of pipes by default), and pipes created past it may hold as little as two pages: ask what it got.
    let capacity = fcntl(&pipe_write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE))
        .or_else(|_| fcntl(&pipe_write, FcntlArg::F_GETPIPE_SZ))
        .ok()
        .and_then(|granted| usize::try_from(granted).ok())
        .unwrap_or(DEFAULT_PIPE_SIZE);
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    while length > 0 {
        // The pipe is empty here and we ask for no more than it holds, so `WouldBlock` can only come
        // from the socket (which is what `try_io` assumes when it clears the readiness).
        let want = usize::try_from(length).unwrap_or(usize::MAX).min(capacity);
        let filled = loop {
            from.readable().await.map_err(SpliceError::Upstream)?;
            match from.try_io(Interest::READABLE, || {
                splice(from, None, &pipe_write, None, want, flags).map_err(io::Error::from)
            }) {
                Ok(0) => {
                    return Err(SpliceError::Upstream(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(count) => break count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) if *moved == 0 && error.raw_os_error() == Some(Errno::EINVAL as i32) => {
                    return Err(SpliceError::Unsupported);
                }
                Err(error) => return Err(SpliceError::Upstream(error)),
            }
        };
        length -= filled as u64;
        if let Some(activity) = activity {
            activity.touch();
        }
        let mut in_pipe = filled;
        while in_pipe > 0 {
            to.writable().await.map_err(SpliceError::Client)?;
            match to.try_io(Interest::WRITABLE, || {
                splice(&pipe_read, None, to, None, in_pipe, flags).map_err(io::Error::from)
            }) {
                Ok(0) => return Err(SpliceError::Client(io::ErrorKind::WriteZero.into())),
                Ok(count) => {
                    in_pipe -= count;
                    *moved += count as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(SpliceError::Client(error)),
            }
        }
    }
    Ok(())
}
