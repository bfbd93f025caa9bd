//! Noticing that a client left while its request waits for a node.
//!
//! actix-web keeps running a handler whose client has disconnected until the handler
//! answers. A non-streamed generation sends nothing until it is complete, so without a
//! check the node would finish work nobody wants and hold its slot meanwhile. The gateway
//! keeps each client connection's socket in the connection's data ([`ClientSocket`]), and
//! while a request waits for a node's answer, [`wait_for`] looks every
//! [`CHECK_INTERVAL`] whether the client closed its side: a zero-length peek, without
//! consuming anything the client may have sent since. Dropping the node request then
//! closes the node connection, which is how Ollama learns to stop.

use std::future::Future;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// How often a waiting request looks at its client.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// The socket of the client connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ClientSocket(pub RawFd);

impl ClientSocket {
    /// True when the client has closed its side or the connection is broken.
    pub fn closed(self) -> bool {
        let mut byte = 0u8;
        // SAFETY: the descriptor belongs to the connection the request is being served
        // on, which actix-web keeps open while the request's handler runs; the peek
        // reads at most one byte into `byte` and never blocks.
        let read = unsafe {
            libc::recv(
                self.0,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if read == 0 {
            return true;
        }
        if read > 0 {
            return false;
        }
        let error = std::io::Error::last_os_error().kind();
        !matches!(
            error,
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        )
    }
}

/// How a wait ended.
pub enum Waited<T> {
    Done(T),
    /// The deadline passed first.
    TimedOut,
    /// The client left first.
    ClientGone,
}

/// Waits for `work` until `deadline` (none: no limit), giving up early when `client`
/// closes its connection.
pub async fn wait_for<F: Future>(
    work: F,
    deadline: Option<Instant>,
    client: Option<ClientSocket>,
) -> Waited<F::Output> {
    let mut work = std::pin::pin!(work);
    loop {
        let now = Instant::now();
        let left = deadline.map(|deadline| deadline.saturating_duration_since(now));
        if left == Some(Duration::ZERO) {
            return Waited::TimedOut;
        }
        let slice = match (client, left) {
            (Some(_), Some(left)) => left.min(CHECK_INTERVAL),
            (Some(_), None) => CHECK_INTERVAL,
            (None, Some(left)) => left,
            (None, None) => return Waited::Done(work.await),
        };
        if let Ok(done) = tokio::time::timeout(slice, work.as_mut()).await {
            return Waited::Done(done);
        }
        if client.is_some_and(ClientSocket::closed) {
            return Waited::ClientGone;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn a_closed_client_is_noticed_and_an_open_one_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        let socket = ClientSocket(server_side.as_raw_fd());
        assert!(!socket.closed());
        // Bytes the client sends are peeked, not taken, and do not count as leaving.
        client.write_all(b"GET").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!socket.closed());
        drop(client);
        std::thread::sleep(Duration::from_millis(20));
        // The unread bytes come first; a peek still sees them.
        let mut rest = [0u8; 3];
        std::io::Read::read_exact(&mut &server_side, &mut rest).unwrap();
        assert!(socket.closed());
    }

    #[test]
    fn waiting_ends_when_the_client_leaves_or_time_is_up() {
        actix_rt::System::new().block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server_side, _) = listener.accept().unwrap();
            let socket = ClientSocket(server_side.as_raw_fd());
            let never = std::future::pending::<()>();
            let deadline = Instant::now() + Duration::from_millis(300);
            assert!(matches!(
                wait_for(never, Some(deadline), Some(socket)).await,
                Waited::TimedOut
            ));
            drop(client);
            let never = std::future::pending::<()>();
            assert!(matches!(
                wait_for(never, None, Some(socket)).await,
                Waited::ClientGone
            ));
            assert!(matches!(
                wait_for(async { 7 }, None, Some(socket)).await,
                Waited::Done(7)
            ));
        });
    }
}
