#!/usr/bin/env python3
"""A client for rcmd's `framed` protocol, written from PROTOCOL.md, standard library only.

Usage: rcmd_client.py HOST PORT COMMAND [--fingerprint SHA256:...] [--header FMT]
                     [--plaintext [--allow-unauthenticated]]

Runs COMMAND on the server, copies its stdout and stderr to ours and exits with its
status, like `rcmd client HOST:PORT -- COMMAND`; a failure of its own (a refusal, a
server's error, no connection) exits 255, as rcmd and ssh do. The token comes from where rcmd's own
client finds it: RCMD_TOKEN, else (sent only to this user's own server, over TLS) the
same-user file `token` in $RCMD_HOME,
$XDG_CONFIG_HOME/rcmd or ~/.config/rcmd.

The connection is TLS 1.3 (PROTOCOL.md, "Transport"). The server is trusted when its
certificate's fingerprint (SHA-256 of the certificate's DER bytes, as `rcmd fingerprint`
prints it) is the one given with --fingerprint, or is this user's own server identity
(`identity.pem` in the same directory, readable by this user alone); otherwise nothing is
sent. --plaintext talks to a `rcmd server --plaintext` instead, on a loopback address
only unless --allow-unauthenticated is also given, as `rcmd client` does.

The configuration directory and the private files in it are checked as rcmd checks them:
a directory another user owns or may write to is refused, and so is a token or client key
that another user owns or may read.
"""
import argparse
import base64
import hashlib
import ipaddress
import os
import socket
import ssl
import stat
import struct
import sys
import tempfile

VERSION = 1
MAX_FRAME = 1 << 20
OWN_FAILURE = 255  # rcmd's (and ssh's) exit code for a failure that is not the command's


def fail(message):
    """Ends with a message of this client's own and OWN_FAILURE, so a caller can tell it
    from the remote command's exit status."""
    sys.stderr.write(f'rcmd_client.py: {message}\n')
    sys.exit(OWN_FAILURE)


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        fail(message)


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


def trusted_config_dir():
    """rcmd's configuration directory if it exists (else None), after the checks rcmd makes:
    whoever else may write to it could replace the token and identities it holds."""
    path = config_dir()
    try:
        meta = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(meta.st_mode):
        fail(f'{path} is not a directory (rcmd\'s configuration directory; '
                 f'set RCMD_HOME to use another)')
    if meta.st_uid != os.geteuid():
        fail(f'{path} belongs to another user (uid {meta.st_uid}), whose token and '
                 f'identity rcmd would then trust; use a directory of your own (RCMD_HOME)')
    mode = stat.S_IMODE(meta.st_mode)
    if mode & 0o022:
        fail(f'{path} can be written by other users (mode {mode:04o}), who could replace '
                 f'the token rcmd trusts; run: chmod 700 {path}')
    return path


def read_private(path, what):
    """The bytes of a file only this user owns and may read, or None if it does not exist;
    any other such file is refused, as rcmd refuses it."""
    try:
        f = open(path, 'rb')
    except FileNotFoundError:
        return None
    with f:
        meta = os.fstat(f.fileno())
        if meta.st_uid != os.geteuid():
            fail(f'{what} {path} belongs to another user (uid {meta.st_uid}); '
                     f'use a file of your own')
        mode = stat.S_IMODE(meta.st_mode)
        if mode & 0o077:
            fail(f'{what} {path} is accessible to other users (mode {mode:04o}); '
                     f'run: chmod 600 {path}')
        return f.read()


def same_user_token():
    """This user's own token (the file `token` in rcmd's configuration directory), or None."""
    directory = trusted_config_dir()
    if directory is None:
        return None
    own = read_private(os.path.join(directory, 'token'), 'token file')
    return None if own is None else own.rstrip(b'\r\n')


def token(own_server, plaintext):
    """The token to present: RCMD_TOKEN, else (only to this user's own server, proved by
    its TLS identity) the same-user file, else none. The same-user token never goes in the
    clear, even as RCMD_TOKEN, or to another server: another local user could be the one
    listening."""
    given = os.environ.get('RCMD_TOKEN', '').encode()
    if given:
        if plaintext and given == same_user_token():
            fail("refusing to send this user's own token (the same-user token file in "
                     "rcmd's configuration directory) with --plaintext: nothing proves who "
                     "listens on that port, and whoever does would read the token. Leave out "
                     "--plaintext, or give a --plaintext server a token of its own")
        return given
    if not own_server:
        return b''
    return same_user_token() or b''


def fingerprint(der):
    """`SHA256:` and the base64 of the SHA-256 of a certificate, without padding (as ssh)."""
    return 'SHA256:' + base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip('=')


def pem_blocks(text):
    """The DER bytes of each `-----BEGIN LABEL-----` block in PEM text, as (LABEL, DER)."""
    blocks = []
    for part in text.split('-----BEGIN ')[1:]:
        label, _, rest = part.partition('-----')
        body = rest.split('-----END ', 1)[0]
        blocks.append((label, base64.b64decode(''.join(body.split()))))
    return blocks


def own_fingerprint(directory):
    """The fingerprint of this user's own server identity, if it has one that nobody else
    can hold: a copy of an identity others may read proves nothing."""
    path = os.path.join(directory, 'identity.pem')
    try:
        meta = os.stat(path)
    except FileNotFoundError:
        return None
    if meta.st_uid != os.geteuid() or stat.S_IMODE(meta.st_mode) & 0o077:
        print(f'rcmd_client.py: {path} is not private to this user; its server is not '
              f'taken as this user\'s own', file=sys.stderr)
        return None
    certs = [der for label, der in pem_blocks(read_private(path, 'identity').decode())
             if label == 'CERTIFICATE']
    return fingerprint(certs[0]) if certs else None


def der_items(der):
    """The top-level (tag, whole item) pairs of DER bytes: enough to take a key apart."""
    items, i = [], 0
    while i < len(der):
        tag, length, j = der[i], der[i + 1], i + 2
        if length & 0x80:
            n = length & 0x7f
            length, j = int.from_bytes(der[j:j + n], 'big'), j + n
        items.append((tag, der[i:j + length], der[j:j + length]))
        i = j + length
    return items


def der_sequence(content):
    n = len(content)
    head = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + \
        n.to_bytes((n.bit_length() + 7) // 8, 'big')
    return b'\x30' + head + content


def pkcs8_v1(der):
    """A PKCS#8 private key as version 1 (RFC 5208). rcmd writes version 2 (RFC 5958:
    the public key follows the private one), which OpenSSL 3.0 refuses to load
    ("PEM lib"); dropping the optional public key leaves the same key in the older form."""
    ((_, _, body),) = der_items(der)
    fields = der_items(body)
    if fields[0][1] != b'\x02\x01\x01':
        return der
    public_key = (0x81, 0xa1)
    kept = [b"\x02\x01\x00"] + [whole for tag, whole, _ in fields[1:] if tag not in public_key]
    return der_sequence(b''.join(kept))


def load_client_key(ctx, path):
    """Presents the client key `rcmd keygen` made, if there is one. Python's ssl loads keys
    only from files, so the key is rewritten in a form OpenSSL 3.0 reads, into a file
    only this user can read, and that file is removed at once."""
    data = read_private(path, 'client key')
    if data is None:
        return
    pem = ''
    for label, der in pem_blocks(data.decode()):
        if label == 'PRIVATE KEY':
            der = pkcs8_v1(der)
        pem += ssl.DER_cert_to_PEM_cert(der).replace('CERTIFICATE', label)
    fd, tmp = tempfile.mkstemp(prefix='rcmd-client-key-')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(pem)
        ctx.load_cert_chain(tmp)
    finally:
        os.unlink(tmp)


def tls_connect(sock, pinned):
    """TLS 1.3 over `sock`, refusing a server whose fingerprint is not trusted."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # No certificate authority: the fingerprint check below is the whole check.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    directory = trusted_config_dir()
    if directory is not None:
        load_client_key(ctx, os.path.join(directory, 'client.pem'))
    tls = ctx.wrap_socket(sock)
    seen = fingerprint(tls.getpeercert(binary_form=True))
    own = own_fingerprint(directory) if directory is not None else None
    if seen != pinned and seen != own:
        tls.close()
        expected = f'not {pinned}, given with --fingerprint' if pinned else 'not known'
        fail(f'the server presented {seen}, {expected}; nothing was sent')
    return tls, seen == own


def check_plaintext(host, port, allow_unauthenticated):
    """Refuses --plaintext to an address beyond loopback before anything is sent, unless
    --allow-unauthenticated: the token, the commands and their output would cross the
    network readable by anyone on the path."""
    if allow_unauthenticated:
        return
    for *_, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        if not ipaddress.ip_address(addr[0]).is_loopback:
            fail(f'refusing --plaintext to {addr[0]}: the token, the commands and their '
                     f'output would cross the network readable by anyone on the path. Drop '
                     f'--plaintext (TLS is the default), or add --allow-unauthenticated if '
                     f'the network is trusted')


def main():
    ap = Parser(description=__doc__.splitlines()[0])
    ap.add_argument('host')
    ap.add_argument('port', type=int)
    ap.add_argument('command')
    ap.add_argument('--header', default='!I')
    ap.add_argument('--fingerprint', help="the server's identity, as `rcmd fingerprint` prints it")
    ap.add_argument('--plaintext', action='store_true', help='no TLS (rcmd server --plaintext)')
    ap.add_argument('--allow-unauthenticated', action='store_true',
                    help='with --plaintext, allow a server beyond loopback')
    args = ap.parse_args()
    if args.allow_unauthenticated and not args.plaintext:
        ap.error('--allow-unauthenticated requires --plaintext')
    if args.plaintext:
        check_plaintext(args.host, args.port, args.allow_unauthenticated)

    with socket.create_connection((args.host, args.port)) as raw:
        sock, own = (raw, False) if args.plaintext else tls_connect(raw, args.fingerprint)
        conn = Framed(sock, args.header)
        conn.send(b'H' + b'rcmd' + struct.pack('!BI', VERSION, MAX_FRAME)
                  + token(own, args.plaintext))
        hello = conn.recv()
        if hello[:1] == b'!':
            fail(f'server: {printable(hello[1:])}')
        if hello[:5] != b'Hrcmd':
            fail('not an rcmd server')
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
                fail(f'server: {printable(body)}')
            else:
                fail(f'unknown message tag {tag!r}')


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (OSError, ValueError, struct.error) as e:  # ssl.SSLError is an OSError
        fail(e)
