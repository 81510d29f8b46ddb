#!/usr/bin/env python3
"""A client for rcmd's `framed` protocol, written from PROTOCOL.md, standard library only.

Usage: rcmd_client.py HOST PORT COMMAND [--header FMT]

Runs COMMAND on the server, copies its stdout and stderr to ours and exits with its
status, like `rcmd client HOST:PORT -- COMMAND`. The token comes from where rcmd's own
client finds it: RCMD_TOKEN, else the same-user file `token` in $RCMD_HOME,
$XDG_CONFIG_HOME/rcmd or ~/.config/rcmd.
"""
import argparse
import os
import socket
import stat
import struct
import sys

VERSION = 1
MAX_FRAME = 1 << 20


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


def token():
    """The token to present: RCMD_TOKEN, else the same-user file, else none."""
    if os.environ.get('RCMD_TOKEN'):
        return os.environ['RCMD_TOKEN'].encode()
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('host')
    ap.add_argument('port', type=int)
    ap.add_argument('command')
    ap.add_argument('--header', default='!I')
    args = ap.parse_args()

    with socket.create_connection((args.host, args.port)) as sock:
        conn = Framed(sock, args.header)
        conn.send(b'H' + b'rcmd' + struct.pack('!BI', VERSION, MAX_FRAME) + token())
        hello = conn.recv()
        if hello[:1] == b'!':
            sys.exit(f'server: {hello[1:].decode(errors="replace")}')
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
                sys.stderr.write(body[4:].decode(errors='replace') + '\n')
                return struct.unpack('!i', body[:4])[0]
            elif tag == b'!':
                sys.exit(f'server: {body.decode(errors="replace")}')
            else:
                sys.exit(f'unknown message tag {tag!r}')


if __name__ == '__main__':
    sys.exit(main())
