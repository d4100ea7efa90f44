//! Receiving datagrams several at a time (recvmmsg(2)).
//!
//! A receiver that napped finds dozens of datagrams waiting (a 4 ms nap at
//! 0.5 M flows/s is ~70 datagrams); one `recvfrom` per datagram pays the
//! system call's fixed cost each time (entry, file lookup, security hook,
//! address copy: ~4 % of the collector's CPU in a profile). `recvmmsg`
//! pays it once for up to [`RECV_BATCH`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

/// Datagrams taken per `recvmmsg` call.
pub(crate) const RECV_BATCH: usize = 16;

/// Buffers for [`RECV_BATCH`] datagrams of up to `max_bytes` each, and the
/// ones received by the last call not handed out yet. The buffers are
/// allocated zeroed and only the pages datagrams are written to become
/// resident.
pub(crate) struct MultiRecv {
    max_bytes: usize,
    bufs: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    got: usize,
    next: usize,
}

impl MultiRecv {
    pub(crate) fn new(max_bytes: usize) -> MultiRecv {
        MultiRecv {
            max_bytes,
            bufs: vec![0; RECV_BATCH * max_bytes],
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
            names: vec![unsafe { std::mem::zeroed() }; RECV_BATCH],
            iovecs: Vec::with_capacity(RECV_BATCH),
            headers: Vec::with_capacity(RECV_BATCH),
            got: 0,
            next: 0,
        }
    }

    /// Datagrams taken by the last call and not handed out yet.
    pub(crate) fn has_pending(&self) -> bool {
        self.next < self.got
    }

    /// The next datagram waiting on `fd` and its sender's address (`None`
    /// for a family other than IPv4/IPv6). `WouldBlock` when none is
    /// waiting: the socket is read with `MSG_DONTWAIT`.
    pub(crate) fn next(&mut self, fd: RawFd) -> io::Result<(&[u8], Option<IpAddr>)> {
        if self.next == self.got {
            self.fill(fd)?;
        }
        let i = self.next;
        self.next += 1;
        let h = &self.headers[i];
        let len = (h.msg_len as usize).min(self.max_bytes);
        let from = peer(&self.names[i], h.msg_hdr.msg_namelen);
        let start = i * self.max_bytes;
        Ok((&self.bufs[start..start + len], from))
    }

    fn fill(&mut self, fd: RawFd) -> io::Result<()> {
        self.got = 0;
        self.next = 0;
        self.iovecs.clear();
        self.headers.clear();
        for chunk in self.bufs.chunks_exact_mut(self.max_bytes) {
            self.iovecs.push(libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            });
        }
        for (iov, name) in self.iovecs.iter_mut().zip(self.names.iter_mut()) {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value
            // (null pointers, zero lengths), then filled below.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            self.headers.push(h);
        }
        // SAFETY: `headers` holds RECV_BATCH initialised mmsghdr; each
        // points at its own `names` entry (with its size) and its own
        // iovec, which points at a disjoint `max_bytes` slice of `bufs`.
        // None of these vectors is resized while the kernel writes, and
        // all outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                RECV_BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.got = n as usize;
        if self.got == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    }
}

/// The IP address in a `sockaddr_storage` the kernel filled.
fn peer(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<IpAddr> {
    let len = len as usize;
    match i32::from(s.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which
            // it is large and aligned enough for.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    /// More datagrams than one call takes, of different sizes, from IPv4
    /// and IPv6 senders: each comes out once, in order, whole, with its
    /// sender; then `WouldBlock`.
    #[test]
    fn every_datagram_comes_out_whole_with_its_sender() {
        for (bind, from) in [("127.0.0.1:0", "127.0.0.1:0"), ("[::1]:0", "[::1]:0")] {
            let rx = UdpSocket::bind(bind).unwrap();
            let tx = UdpSocket::bind(from).unwrap();
            let n = RECV_BATCH * 2 + 3;
            for i in 0..n {
                let d = vec![i as u8; 1 + i * 97];
                tx.send_to(&d, rx.local_addr().unwrap()).unwrap();
            }
            let mut mr = MultiRecv::new(65_535);
            for i in 0..n {
                let (d, peer) = mr.next(rx.as_raw_fd()).unwrap();
                assert_eq!(d, vec![i as u8; 1 + i * 97].as_slice(), "datagram {i}");
                assert_eq!(peer, Some(tx.local_addr().unwrap().ip()));
                assert_eq!(
                    mr.has_pending(),
                    i % RECV_BATCH != RECV_BATCH - 1 && i + 1 < n
                );
            }
            let e = mr.next(rx.as_raw_fd()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        }
    }
}
