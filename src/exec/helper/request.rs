//! The helper's request format: a plan as bytes, sent with its descriptors as
//! `SCM_RIGHTS` over a Unix socket.

use std::ffi::{OsStr, OsString};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use rustix::io::Errno;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

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
        let fds: Vec<BorrowedFd<'_>> = self.fds.iter().map(AsFd::as_fd).collect();
        send_with_fds(sock, &len, &fds)?;
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

/// The most descriptors one message may carry: room for [`PASSED`] and more, so a
/// message with too many is read whole and refused, not cut short.
const MAX_FDS: usize = 12;

/// Sends `data` with `fds` attached to its first byte, then the rest of `data` (if the
/// first `sendmsg` took only part of it) as plain bytes.
pub(super) fn send_with_fds(
    sock: &UnixStream,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    loop {
        match sendmsg(
            sock,
            &[IoSlice::new(data)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) => {
                // The descriptors went with the first byte; the rest is plain data.
                let mut rest = sock;
                return rest.write_all(&data[n..]);
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives into `buf` with the descriptors that came along (close-on-exec); more than
/// `max_fds` of them, or a control message cut short, is an error.
pub(super) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<Received> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        match recvmsg(
            sock,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(got) => break got,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    // Every descriptor the kernel installed becomes an OwnedFd, so none leaks even when
    // more came than we wanted.
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(passed) = message {
            fds.extend(passed);
        }
    }
    if got.flags.contains(ReturnFlags::CTRUNC) || fds.len() > max_fds {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected descriptors on the helper's socket",
        ));
    }
    Ok(Received {
        bytes: got.bytes,
        fds,
    })
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
