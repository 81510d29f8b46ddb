//! Which local user holds the other end of a connection from this machine, asked of the
//! kernel's socket table through sock_diag (the netlink interface `ss` uses).
//!
//! Every local user connects from loopback (or from this machine's other addresses), and
//! any of them may bind any of 127.0.0.0/8, so an address says nothing about who is
//! connecting: the peer socket's owner does. One exact lookup by the connection's four
//! addresses and ports costs one netlink round trip, however many sockets the machine
//! holds; a peer elsewhere has no socket here, and is not found.
//!
//! ```text
//! request:  nlmsghdr (16) | inet_diag_req_v2 (56): family, protocol, ext, pad, states:u32,
//!                           inet_diag_sockid (48): sport:be16 dport:be16 src[16] dst[16]
//!                                                  if:u32 cookie:u32[2]
//! answer:   nlmsghdr (16) | inet_diag_msg (72): family, state, timer, retrans, sockid (48),
//!                           expires:u32 rqueue:u32 wqueue:u32 uid:u32 inode:u32
//!           or nlmsghdr (16) | nlmsgerr: error:i32 (negative errno; -ENOENT: no such socket)
//! ```

use std::io;
use std::net::{IpAddr, SocketAddr};

use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

const NLMSG_HDRLEN: usize = 16;
const REQ_LEN: usize = 56;
const MSG_LEN: usize = 72;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const UID_AT: usize = 64;
/// States whose `uid` is not the owner's: a socket in TIME_WAIT or a half-open request
/// is reported with uid 0.
const TCP_TIME_WAIT: u8 = 6;
const TCP_NEW_SYN_RECV: u8 = 12;

/// The uid that owns the peer's end of the TCP connection from `peer` to our `local`
/// address, when both are on this machine. `None` when the peer is elsewhere, or the
/// kernel no longer knows its socket (it closed), or does not say whose it is.
///
/// # Errors
/// The netlink socket could not be opened or asked (a kernel without sock_diag).
pub(crate) fn owner(peer: SocketAddr, local: SocketAddr) -> io::Result<Option<u32>> {
    let (peer, local) = (canonical(peer), canonical(local));
    let Some(request) = request(peer, local) else {
        return Ok(None);
    };
    let socket = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(rustix::net::netlink::SOCK_DIAG),
    )?;
    // An unconnected netlink socket sends to the kernel.
    rustix::net::send(&socket, &request, SendFlags::empty())?;
    let mut answer = [0u8; 1024];
    // The kernel answers an exact lookup while `send` runs, so this never waits (and must
    // not: it runs on the accept loop).
    let (got, _) = rustix::net::recv(&socket, &mut answer, RecvFlags::DONTWAIT)?;
    parse(&answer[..got])
}

/// IPv4 written as IPv6 (`::ffff:127.0.0.1`, from a dual-stack listener) as plain IPv4:
/// that is how the peer's own socket is addressed.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// The request for the socket whose own address is `peer` and whose remote one is
/// `local`: the other end of our connection. `None` for mixed address families.
fn request(peer: SocketAddr, local: SocketAddr) -> Option<Vec<u8>> {
    let family = match (peer.ip(), local.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => AddressFamily::INET,
        (IpAddr::V6(_), IpAddr::V6(_)) => AddressFamily::INET6,
        _ => return None,
    };
    let mut b = Vec::with_capacity(NLMSG_HDRLEN + REQ_LEN);
    b.extend_from_slice(&((NLMSG_HDRLEN + REQ_LEN) as u32).to_ne_bytes());
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    b.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    b.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    let tcp = rustix::net::ipproto::TCP.as_raw().get();
    b.extend_from_slice(&[family.as_raw() as u8, tcp as u8, 0, 0]);
    b.extend_from_slice(&u32::MAX.to_ne_bytes()); // any state
    b.extend_from_slice(&peer.port().to_be_bytes());
    b.extend_from_slice(&local.port().to_be_bytes());
    for ip in [peer.ip(), local.ip()] {
        let mut field = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => field[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => field.copy_from_slice(&v6.octets()),
        }
        b.extend_from_slice(&field);
    }
    b.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    b.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    Some(b)
}

fn parse(answer: &[u8]) -> io::Result<Option<u32>> {
    let u32_at = |at: usize| {
        answer
            .get(at..at + 4)
            .map(|b| u32::from_ne_bytes(b.try_into().expect("four bytes")))
    };
    let kind = answer.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    match kind {
        Some(NLMSG_ERROR) => {
            let errno = u32_at(NLMSG_HDRLEN).map_or(0, |e| -(e as i32));
            if errno == Errno::NOENT.raw_os_error() || errno == 0 {
                Ok(None)
            } else {
                Err(io::Error::from_raw_os_error(errno))
            }
        }
        Some(SOCK_DIAG_BY_FAMILY) if answer.len() >= NLMSG_HDRLEN + MSG_LEN => {
            let state = answer[NLMSG_HDRLEN + 1];
            if matches!(state, TCP_TIME_WAIT | TCP_NEW_SYN_RECV) {
                return Ok(None);
            }
            Ok(u32_at(NLMSG_HDRLEN + UID_AT))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "sock_diag: an answer too short or of an unknown type",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid() -> u32 {
        rustix::process::getuid().as_raw()
    }

    #[test]
    fn the_owner_of_a_loopback_peer_is_found_from_either_end() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let local = server.local_addr().unwrap();
        assert_eq!(owner(peer, local).unwrap(), Some(uid()));
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
        let mapped = |a: SocketAddr| match a.ip() {
            IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
            IpAddr::V6(_) => a,
        };
        assert_eq!(owner(mapped(peer), mapped(local)).unwrap(), Some(uid()));
        drop(client);
    }

    #[test]
    fn no_owner_for_a_socket_that_does_not_exist_or_is_not_local() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        // Nobody is connected from port 1.
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(owner(nobody, local).unwrap(), None);
        // Only looked up in our own socket table: no packet is sent anywhere.
        let remote: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        assert_eq!(owner(remote, local).unwrap(), None);
    }

    #[test]
    fn answers_are_read_with_care() {
        assert!(parse(&[]).is_err());
        let mut short = vec![0u8; NLMSG_HDRLEN + 10];
        short[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        assert!(parse(&short).is_err());
        let mut error = vec![0u8; NLMSG_HDRLEN + 4];
        error[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        let eperm = Errno::PERM.raw_os_error();
        error[16..20].copy_from_slice(&(-eperm).to_ne_bytes());
        assert_eq!(parse(&error).unwrap_err().raw_os_error(), Some(eperm));
    }
}
