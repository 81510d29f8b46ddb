#!/usr/bin/env python3
"""A client for rcmd's `framed` protocol, written from PROTOCOL.md, standard library only.

Usage: rcmd_client.py HOST PORT COMMAND [--fingerprint SHA256:...] [--plaintext] [--header FMT]

Runs COMMAND on the server, copies its stdout and stderr to ours and exits with its
status, like `rcmd client HOST:PORT -- COMMAND`. The token comes from where rcmd's own
client finds it: RCMD_TOKEN, else (sent only to this user's own server, over TLS) the
same-user file `token` in $RCMD_HOME,
$XDG_CONFIG_HOME/rcmd or ~/.config/rcmd.

The connection is TLS 1.3 (PROTOCOL.md, "Transport"). The server is trusted when its
certificate's fingerprint (SHA-256 of the certificate's DER bytes, as `rcmd fingerprint`
prints it) is the one given with --fingerprint, or is this user's own server identity
(`identity.pem` in the same directory); otherwise nothing is sent. --plaintext talks to a
`rcmd server --plaintext` instead.
"""
import argparse
import base64
import hashlib
import os
import socket
import ssl
import stat
import struct
import sys

VERSION = 1
MAX_FRAME = 1 << 20


def printable(data):
    """The server's text as one line rcmd would print: no escape sequence, carriage return
    or newline gets through to the terminal (as Python's repr() shows a string)."""
    return repr(data.decode(errors='replace'))[1:-1]


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError('server closed the connection mid-frame')
        buf += chunk
    return bytes(buf)


class Framed:
    def __init__(self, sock, fmt):
        self.sock = sock
        self.fmt = fmt
        self.head = struct.calcsize(fmt)

    def send(self, payload):
        self.sock.sendall(struct.pack(self.fmt, len(payload)) + payload)

    def recv(self):
        (length,) = struct.unpack(self.fmt, recv_exact(self.sock, self.head))
        # Check the length before reading (and so allocating) that much.
        if length < 0 or length > MAX_FRAME:
            raise ValueError(f'bad frame length {length}')
        return recv_exact(self.sock, length)


def config_dir():
    """rcmd's configuration directory, found as rcmd finds it."""
    if os.environ.get('RCMD_HOME'):
        return os.environ['RCMD_HOME']
    if os.environ.get('XDG_CONFIG_HOME'):
        return os.path.join(os.environ['XDG_CONFIG_HOME'], 'rcmd')
    return os.path.join(os.path.expanduser('~'), '.config', 'rcmd')


def token(own_server):
    """The token to present: RCMD_TOKEN, else (only to this user's own server, proved by
    its TLS identity) the same-user file, else none. The same-user token never goes in the
    clear or to another server: another local user could be the one listening."""
    if os.environ.get('RCMD_TOKEN'):
        return os.environ['RCMD_TOKEN'].encode()
    if not own_server:
        return b''
    path = os.path.join(config_dir(), 'token')
    try:
        f = open(path, 'rb')
    except FileNotFoundError:
        return b''
    with f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            sys.exit(f'token file {path} is accessible to other users (mode {mode:04o}); '
                     f'run: chmod 600 {path}')
        return f.read().rstrip(b'\r\n')


def fingerprint(der):
    """`SHA256:` and the base64 of the SHA-256 of a certificate, without padding (as ssh)."""
    return 'SHA256:' + base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip('=')


def pem_fingerprint(path):
    """The fingerprint of the certificate in a PEM file, or None if there is none."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    end = '-----END CERTIFICATE-----'
    if end not in text:
        return None
    return fingerprint(ssl.PEM_cert_to_DER_cert(text[:text.index(end) + len(end)]))


def tls_connect(sock, pinned):
    """TLS 1.3 over `sock`, refusing a server whose fingerprint is not trusted."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # No certificate authority: the fingerprint check below is the whole check.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    key = os.path.join(config_dir(), 'client.pem')
    if os.path.exists(key):
        ctx.load_cert_chain(key)
    tls = ctx.wrap_socket(sock)
    seen = fingerprint(tls.getpeercert(binary_form=True))
    own = pem_fingerprint(os.path.join(config_dir(), 'identity.pem'))
    if seen != pinned and seen != own:
        tls.close()
        expected = f'not {pinned}, given with --fingerprint' if pinned else 'not known'
        sys.exit(f'the server presented {seen}, {expected}; nothing was sent')
    return tls, seen == own


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('host')
    ap.add_argument('port', type=int)
    ap.add_argument('command')
    ap.add_argument('--header', default='!I')
    ap.add_argument('--fingerprint', help="the server's identity, as `rcmd fingerprint` prints it")
    ap.add_argument('--plaintext', action='store_true', help='no TLS (rcmd server --plaintext)')
    args = ap.parse_args()

    with socket.create_connection((args.host, args.port)) as raw:
        sock, own = (raw, False) if args.plaintext else tls_connect(raw, args.fingerprint)
        conn = Framed(sock, args.header)
        conn.send(b'H' + b'rcmd' + struct.pack('!BI', VERSION, MAX_FRAME) + token(own))
        hello = conn.recv()
        if hello[:1] == b'!':
            sys.exit(f'server: {printable(hello[1:])}')
        if hello[:5] != b'Hrcmd':
            sys.exit('not an rcmd server')
        conn.send(b'R' + args.command.encode())
        while True:
            msg = conn.recv()
            tag, body = msg[:1], msg[1:]
            if tag == b'O':
                sys.stdout.buffer.write(body)
                sys.stdout.buffer.flush()
            elif tag == b'E':
                sys.stderr.buffer.write(body)
                sys.stderr.buffer.flush()
            elif tag == b'X':
                return struct.unpack('!i', body[:4])[0]
            elif tag == b'S':
                return 128 + struct.unpack('!i', body[:4])[0]
            elif tag == b'F':
                sys.stderr.write(printable(body[4:]) + '\n')
                return struct.unpack('!i', body[:4])[0]
            elif tag == b'!':
                sys.exit(f'server: {printable(body)}')
            else:
                sys.exit(f'unknown message tag {tag!r}')


if __name__ == '__main__':
    sys.exit(main())
