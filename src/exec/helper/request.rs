//! The helper's request format: a plan as bytes, sent with its descriptors as
//! `SCM_RIGHTS` over a Unix socket.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use super::{MAX_REQUEST, PASSED};
use crate::exec::supervisor::Plan;

/// One request as it came: its body, and the descriptors that came with it.
pub(super) struct Request {
    pub body: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

impl Request {
    /// Reads one request from `sock`, with `PASSED` descriptors (or, if `serial`, one
    /// more, for a supervisor to keep); `None` when the other end closed it.
    pub(super) fn read(sock: &mut UnixStream, serial: bool) -> io::Result<Option<Request>> {
        let mut len = [0u8; 4];
        let most = PASSED + usize::from(serial);
        let got = recv_with_fds(sock.as_fd(), &mut len, most)?;
        if got.bytes == 0 {
            return Ok(None);
        }
        if got.bytes < len.len() {
            sock.read_exact(&mut len[got.bytes..])?;
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_REQUEST || got.fds.len() < PASSED {
            return Err(malformed());
        }
        let mut body = vec![0u8; len];
        sock.read_exact(&mut body)?;
        Ok(Some(Request { body, fds: got.fds }))
    }

    /// Passes the request on, descriptors and all.
    pub(super) fn send(&self, sock: &UnixStream) -> io::Result<()> {
        let len = (self.body.len() as u32).to_le_bytes();
        let raw: Vec<RawFd> = self.fds.iter().map(AsRawFd::as_raw_fd).collect();
        send_with_fds(sock, &len, &raw)?;
        let mut w = sock;
        w.write_all(&self.body)
    }
}

pub(super) fn malformed() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "malformed request from the server",
    )
}

/// What one `recvmsg` brought: how many bytes, and the descriptors that came with them.
pub(super) struct Received {
    pub bytes: usize,
    pub fds: Vec<OwnedFd>,
}

/// Room for the control message carrying up to [`PASSED`] descriptors.
const CMSG_ROOM: usize = 64;

pub(super) fn send_with_fds(sock: &UnixStream, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut cmsg = [0u64; CMSG_ROOM / 8];
    // SAFETY: msghdr points at locals that outlive the call; the control message is
    // built with the CMSG macros inside a buffer large enough for PASSED descriptors.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            let size = std::mem::size_of_val(fds) as u32;
            msg.msg_control = cmsg.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(size) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        }
        loop {
            let n = libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
            if n >= 0 {
                // The descriptors went with the first byte; the rest is plain data.
                let mut rest = sock;
                return rest.write_all(&data[n as usize..]);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

pub(super) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<Received> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cmsg = [0u64; CMSG_ROOM / 8];
    // SAFETY: as in send_with_fds; every descriptor the kernel installed is taken into an
    // OwnedFd, so none leaks even when more came than we wanted.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cmsg);
        let n = loop {
            let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        let mut fds = Vec::new();
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() > max_fds {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected descriptors on the helper's socket",
            ));
        }
        Ok(Received { bytes: n, fds })
    }
}

/// The plan as bytes: flags, then length-prefixed strings (program, directory, each
/// argument, each variable's name and value) with counts before the lists.
pub(super) fn encode(plan: &Plan) -> Vec<u8> {
    let mut out = vec![u8::from(plan.detach) | (u8::from(plan.tty) << 1)];
    let mut put = |s: &[u8]| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s);
    };
    put(plan.program.as_bytes());
    for p in [&plan.cwd, &plan.cgroup] {
        put(p.as_ref().map_or(&[][..], |d| d.as_os_str().as_bytes()));
    }
    put(&(plan.args.len() as u32).to_le_bytes());
    for a in &plan.args {
        put(a.as_bytes());
    }
    put(&(plan.env.len() as u32).to_le_bytes());
    for (k, v) in &plan.env {
        put(k.as_bytes());
        put(v.as_bytes());
    }
    out
}

pub(super) fn decode(body: &[u8]) -> Option<Plan> {
    let (&flags, mut rest) = body.split_first()?;
    let mut take = || -> Option<&[u8]> {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let s = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        Some(s)
    };
    let os = |s: &[u8]| OsString::from_vec(s.to_vec());
    let count = |s: &[u8]| Some(u32::from_le_bytes(s.try_into().ok()?) as usize);
    let program = os(take()?);
    let path = |p: &[u8]| (!p.is_empty()).then(|| PathBuf::from(OsStr::from_bytes(p)));
    let cwd = path(take()?);
    let cgroup = path(take()?);
    let mut args = Vec::new();
    for _ in 0..count(take()?)? {
        args.push(os(take()?));
    }
    let mut env = Vec::new();
    for _ in 0..count(take()?)? {
        let k = os(take()?);
        env.push((k, os(take()?)));
    }
    Some(Plan {
        detach: flags & 1 != 0,
        tty: flags & 2 != 0,
        program,
        args,
        env,
        cwd,
        cgroup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_round_trip() {
        let plan = Plan {
            detach: true,
            tty: false,
            program: "sh".into(),
            args: vec!["-c".into(), "echo --tty".into(), "".into()],
            env: vec![("A".into(), "1=2".into()), ("EMPTY".into(), "".into())],
            cwd: Some("/tmp/a b".into()),
            cgroup: Some("/sys/fs/cgroup/rcmd-1-0/cmd-3".into()),
        };
        assert_eq!(decode(&encode(&plan)), Some(plan.clone()));
        let bare = Plan {
            tty: true,
            detach: false,
            args: vec![],
            env: vec![],
            cwd: None,
            cgroup: None,
            ..plan
        };
        assert_eq!(decode(&encode(&bare)), Some(bare));
    }

    #[test]
    fn truncated_requests_are_refused() {
        let plan = Plan {
            detach: false,
            tty: false,
            program: "true".into(),
            args: vec!["x".into()],
            env: vec![("A".into(), "1".into())],
            cwd: None,
            cgroup: None,
        };
        let bytes = encode(&plan);
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
    }
}
