//! TCP socket tuning for the node's connections: the minimum
//! retransmission timeout.
//!
//! Linux waits at least 200 ms (`TCP_RTO_MIN`) before it retransmits a lost
//! segment, and a lost segment stalls everything multiplexed on that
//! connection until then: a designed-for-the-internet floor that is 400
//! times a loopback or same-rack round trip. Since kernel 6.15 a socket can
//! lower its own floor (`TCP_RTO_MIN_US`); the retransmission timeout stays
//! at least the measured round trip plus four deviations, so a slow link
//! still gets a long one. The tail-loss probe that recovers a lost last
//! segment uses the same floor.

use std::io;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// `TCP_RTO_MIN_US` from `linux/tcp.h` (not yet in the libc crate).
#[cfg(target_os = "linux")]
const TCP_RTO_MIN_US: libc::c_int = 45;

/// Smallest and largest floor the kernel accepts (`TCP_TIMEOUT_MIN_US`
/// is 2 ms; more than the default 200 ms makes no sense here).
pub const RTO_MIN_RANGE_MS: std::ops::RangeInclusive<u64> = 2..=200;

/// Socket options applied to every connection a node opens or accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpTuning {
    /// Minimum retransmission timeout (`None`: the kernel's, 200 ms).
    pub rto_min: Option<Duration>,
}

impl TcpTuning {
    /// Applies the options to a connected socket.
    pub fn apply(&self, tcp: &TcpStream) -> io::Result<()> {
        match self.rto_min {
            Some(rto_min) => set_rto_min(tcp, rto_min),
            None => Ok(()),
        }
    }

    /// Applies the options to a listening socket (Linux copies them to the
    /// connections it accepts); an error means the kernel lacks them.
    pub fn apply_listener(&self, listener: &TcpListener) -> io::Result<()> {
        match self.rto_min {
            Some(rto_min) => set_rto_min(listener, rto_min),
            None => Ok(()),
        }
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_rto_min(socket: &impl std::os::fd::AsRawFd, rto_min: Duration) -> io::Result<()> {
    let micros = libc::c_int::try_from(rto_min.as_micros())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "rto_min too large"))?;
    // SAFETY: `socket` is an open socket for the duration of the call; the
    // option value is a c_int on our stack and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            TCP_RTO_MIN_US,
            (&micros as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_rto_min(_socket: &impl Sized, _rto_min: Duration) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "TCP_RTO_MIN_US needs Linux 6.15 or newer",
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[allow(unsafe_code)]
    fn rto_min_us(socket: &impl AsRawFd) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: open socket; value and len point to our stack with the right size.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                TCP_RTO_MIN_US,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        value
    }

    #[tokio::test]
    async fn the_rto_floor_is_set_on_connections_and_inherited_by_accepted_ones() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let tuning = TcpTuning {
            rto_min: Some(Duration::from_millis(20)),
        };
        if let Err(e) = tuning.apply_listener(&listener) {
            // An older kernel: nothing to check (tallyd logs this at start).
            eprintln!("TCP_RTO_MIN_US unsupported here: {e}");
            return;
        }
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        tuning.apply(&client).expect("apply to the client side");
        assert_eq!(rto_min_us(&client), 20_000);
        assert_eq!(rto_min_us(&accepted), 20_000, "inherited from the listener");
        assert_eq!(rto_min_us(&listener), 20_000);
    }
}
