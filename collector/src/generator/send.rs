//! Sending pre-encoded datagrams at an exact average rate.
//!
//! Pacing: datagram `i` is due when the flows before it, at
//! `rate_flows_per_s`, have had their time since the start. The schedule is
//! computed from the start instant (never accumulated), so the average rate
//! does not drift. Datagrams due within [`BURST_WINDOW`] go out together in
//! one `sendmmsg(2)` of at most [`MAX_BURST_DATAGRAMS`]; between bursts the
//! sender sleeps until [`SPIN_BEFORE_DUE`] before the next due time, then
//! spins — about 1 ms granularity without burning a core.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::DatagramBatch;

/// Most datagrams one `sendmmsg(2)` call carries.
pub const MAX_BURST_DATAGRAMS: usize = 64;
/// Datagrams due within this much of now are sent in the current burst.
const BURST_WINDOW: Duration = Duration::from_millis(1);
/// Sleep until this long before a due time, then spin (nanosleep overshoots
/// by the timer slack, 50 µs by default).
const SPIN_BEFORE_DUE: Duration = Duration::from_micros(200);
/// Retries of a send that would block before giving up with an error.
const MAX_WOULD_BLOCK_RETRIES: u64 = 10_000_000;

/// What a send run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendReport {
    pub datagrams_sent: u64,
    pub flows_sent: u64,
    /// UDP payload bytes.
    pub bytes_sent: u64,
    pub elapsed: Duration,
    /// Send system calls made (`sendmmsg` or `sendto`).
    pub syscalls: u64,
    /// Sends retried because a non-blocking socket's buffer was full.
    pub would_block_retries: u64,
    /// Longest the sender fell behind its schedule, µs (0 when unpaced):
    /// well above 1000 means the wanted rate was not reached.
    pub max_lag_us: u64,
    /// Whether `sendmmsg(2)` was used (else one `sendto` per datagram).
    pub used_sendmmsg: bool,
}

impl SendReport {
    /// Achieved average rate, flows per second (integer).
    pub fn flows_per_s(&self) -> u64 {
        let ns = self.elapsed.as_nanos().max(1);
        u64::try_from(u128::from(self.flows_sent) * 1_000_000_000 / ns).unwrap_or(u64::MAX)
    }
}

/// Sends `datagrams` to `target`, paced to `rate_flows_per_s` (as fast as
/// possible when `None`), counting `flows_per_datagram` flows per datagram
/// for the schedule and the report. Prefer [`send_batch`], which knows the
/// exact flow count of every datagram.
pub fn send_stream(
    socket: &UdpSocket,
    target: SocketAddr,
    datagrams: &[Vec<u8>],
    rate_flows_per_s: Option<u64>,
    flows_per_datagram: usize,
) -> io::Result<SendReport> {
    if flows_per_datagram == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "flows_per_datagram must be >= 1",
        ));
    }
    let source = VecSource {
        datagrams,
        flows: flows_per_datagram as u64,
    };
    send_paced(socket, target, &source, rate_flows_per_s)
}

/// Sends every datagram of `batch` to `target`, paced to
/// `rate_flows_per_s` by each datagram's own flow count.
pub fn send_batch(
    socket: &UdpSocket,
    target: SocketAddr,
    batch: &DatagramBatch,
    rate_flows_per_s: Option<u64>,
) -> io::Result<SendReport> {
    send_paced(socket, target, batch, rate_flows_per_s)
}

trait Source {
    fn count(&self) -> usize;
    fn bytes(&self, i: usize) -> &[u8];
    fn flows(&self, i: usize) -> u64;
}

struct VecSource<'a> {
    datagrams: &'a [Vec<u8>],
    flows: u64,
}

impl Source for VecSource<'_> {
    fn count(&self) -> usize {
        self.datagrams.len()
    }
    fn bytes(&self, i: usize) -> &[u8] {
        &self.datagrams[i]
    }
    fn flows(&self, _: usize) -> u64 {
        self.flows
    }
}

impl Source for DatagramBatch {
    fn count(&self) -> usize {
        self.len()
    }
    fn bytes(&self, i: usize) -> &[u8] {
        self.get(i)
    }
    fn flows(&self, i: usize) -> u64 {
        u64::from(self.infos()[i].flows)
    }
}

/// Nanoseconds after the start at which `flows_before` flows are done.
fn due_ns(flows_before: u64, rate_flows_per_s: u64) -> u128 {
    u128::from(flows_before) * 1_000_000_000 / u128::from(rate_flows_per_s)
}

fn send_paced<S: Source>(
    socket: &UdpSocket,
    target: SocketAddr,
    source: &S,
    rate_flows_per_s: Option<u64>,
) -> io::Result<SendReport> {
    if rate_flows_per_s == Some(0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "rate_flows_per_s must be >= 1",
        ));
    }
    let mut sender = Sender::new(socket, target);
    let mut report = SendReport::default();
    let n = source.count();
    let window_ns = BURST_WINDOW.as_nanos();
    let start = Instant::now();
    let mut i = 0usize;
    let mut flows_before = 0u64;
    let mut burst: Vec<&[u8]> = Vec::with_capacity(MAX_BURST_DATAGRAMS);
    while i < n {
        let mut horizon_ns = u128::MAX;
        if let Some(rate) = rate_flows_per_s {
            let due = due_ns(flows_before, rate);
            let now = start.elapsed().as_nanos();
            if due > now {
                wait_until(start, due);
                horizon_ns = due + window_ns;
            } else {
                let lag_us = u64::try_from((now - due) / 1000).unwrap_or(u64::MAX);
                report.max_lag_us = report.max_lag_us.max(lag_us);
                horizon_ns = now + window_ns;
            }
        }
        burst.clear();
        let mut flows = flows_before;
        let mut j = i;
        while j < n && burst.len() < MAX_BURST_DATAGRAMS {
            if j > i
                && let Some(rate) = rate_flows_per_s
                && due_ns(flows, rate) > horizon_ns
            {
                break;
            }
            burst.push(source.bytes(j));
            report.bytes_sent += source.bytes(j).len() as u64;
            flows += source.flows(j);
            j += 1;
        }
        sender.send_all(&burst, &mut report)?;
        report.datagrams_sent += (j - i) as u64;
        report.flows_sent += flows - flows_before;
        flows_before = flows;
        i = j;
    }
    report.elapsed = start.elapsed();
    report.used_sendmmsg = sender.uses_sendmmsg();
    Ok(report)
}

/// Sleeps, then spins, until `due_ns` after `start`.
fn wait_until(start: Instant, due_ns: u128) {
    let spin_ns = SPIN_BEFORE_DUE.as_nanos();
    loop {
        let now = start.elapsed().as_nanos();
        if now >= due_ns {
            return;
        }
        let left = due_ns - now;
        if left > 2 * spin_ns {
            let sleep_ns = u64::try_from(left - spin_ns).unwrap_or(u64::MAX);
            std::thread::sleep(Duration::from_nanos(sleep_ns));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// One send attempt's outcome, shared by both send paths.
fn retry_or_fail(e: io::Error, report: &mut SendReport) -> io::Result<()> {
    match e.kind() {
        io::ErrorKind::Interrupted => Ok(()),
        io::ErrorKind::WouldBlock => {
            report.would_block_retries += 1;
            if report.would_block_retries > MAX_WOULD_BLOCK_RETRIES {
                return Err(e);
            }
            std::thread::yield_now();
            Ok(())
        }
        _ => Err(e),
    }
}

struct Sender<'a> {
    socket: &'a UdpSocket,
    target: SocketAddr,
    #[cfg(target_os = "linux")]
    mmsg: Option<mmsg::Batch>,
}

impl<'a> Sender<'a> {
    fn new(socket: &'a UdpSocket, target: SocketAddr) -> Sender<'a> {
        Sender {
            socket,
            target,
            #[cfg(target_os = "linux")]
            mmsg: Some(mmsg::Batch::new(target)),
        }
    }

    fn uses_sendmmsg(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            self.mmsg.is_some()
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    }

    fn send_all(&mut self, datagrams: &[&[u8]], report: &mut SendReport) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(batch) = self.mmsg.as_mut() {
            use std::os::fd::AsRawFd;
            let fd = self.socket.as_raw_fd();
            let mut done = 0;
            while done < datagrams.len() {
                report.syscalls += 1;
                match batch.send(fd, &datagrams[done..]) {
                    Ok(n) => done += n,
                    Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                        self.mmsg = None;
                        return self.send_each(&datagrams[done..], report);
                    }
                    Err(e) => retry_or_fail(e, report)?,
                }
            }
            return Ok(());
        }
        self.send_each(datagrams, report)
    }

    fn send_each(&mut self, datagrams: &[&[u8]], report: &mut SendReport) -> io::Result<()> {
        for d in datagrams {
            loop {
                report.syscalls += 1;
                match self.socket.send_to(d, self.target) {
                    Ok(_) => break,
                    Err(e) => retry_or_fail(e, report)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
mod mmsg {
    use std::io;
    use std::net::SocketAddr;
    use std::os::fd::RawFd;

    use super::MAX_BURST_DATAGRAMS;

    /// Reusable `sendmmsg(2)` argument arrays for one target.
    pub(super) struct Batch {
        target: socket2::SockAddr,
        headers: Vec<libc::mmsghdr>,
        iovecs: Vec<libc::iovec>,
    }

    impl Batch {
        pub(super) fn new(target: SocketAddr) -> Batch {
            Batch {
                target: socket2::SockAddr::from(target),
                headers: Vec::with_capacity(MAX_BURST_DATAGRAMS),
                iovecs: Vec::with_capacity(MAX_BURST_DATAGRAMS),
            }
        }

        /// Sends up to [`MAX_BURST_DATAGRAMS`] of `datagrams` in one call;
        /// returns how many went out (at least 1 on success).
        pub(super) fn send(&mut self, fd: RawFd, datagrams: &[&[u8]]) -> io::Result<usize> {
            let n = datagrams.len().min(MAX_BURST_DATAGRAMS);
            if n == 0 {
                return Ok(0);
            }
            self.iovecs.clear();
            self.headers.clear();
            for d in &datagrams[..n] {
                self.iovecs.push(libc::iovec {
                    iov_base: d.as_ptr() as *mut libc::c_void,
                    iov_len: d.len(),
                });
            }
            let name = self.target.as_ptr() as *mut libc::c_void;
            let name_len = self.target.len();
            for iov in self.iovecs.iter_mut() {
                // SAFETY: mmsghdr is plain old data; all-zero is a valid
                // value (null pointers, zero lengths), then filled below.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = name;
                h.msg_hdr.msg_namelen = name_len;
                h.msg_hdr.msg_iov = iov as *mut libc::iovec;
                h.msg_hdr.msg_iovlen = 1;
                self.headers.push(h);
            }
            // SAFETY: `headers` holds `n` initialised mmsghdr whose name
            // points into `self.target` and whose iovecs point into
            // `self.iovecs`, which point into `datagrams`; all outlive the
            // call, and the kernel only reads the buffers for a send.
            let sent =
                unsafe { libc::sendmmsg(fd, self.headers.as_mut_ptr(), n as libc::c_uint, 0) };
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(sent as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        (tx, rx)
    }

    #[test]
    fn sends_every_datagram_in_order() {
        let (tx, rx) = pair();
        let datagrams: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let report = send_stream(&tx, rx.local_addr().unwrap(), &datagrams, None, 3).unwrap();
        assert_eq!(report.datagrams_sent, 200);
        assert_eq!(report.flows_sent, 600);
        assert_eq!(report.bytes_sent, 800);
        let mut buf = [0u8; 16];
        for i in 0..200u32 {
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &i.to_be_bytes());
        }
        assert!(send_stream(&tx, rx.local_addr().unwrap(), &datagrams, None, 0).is_err());
        assert!(send_stream(&tx, rx.local_addr().unwrap(), &datagrams, Some(0), 1).is_err());
    }

    #[test]
    fn pacing_holds_the_rate() {
        let (tx, rx) = pair();
        let datagrams: Vec<Vec<u8>> = vec![vec![0u8; 100]; 200];
        // 200 datagrams × 10 flows at 10 000 flows/s: 0.2 s (the last one
        // is due at 0.199 s, and may go up to one burst window early).
        let report =
            send_stream(&tx, rx.local_addr().unwrap(), &datagrams, Some(10_000), 10).unwrap();
        let ms = report.elapsed.as_millis();
        assert!((190..400).contains(&ms), "{report:?}");
        let mut buf = [0u8; 128];
        for _ in 0..200 {
            rx.recv_from(&mut buf).unwrap();
        }
    }
}
