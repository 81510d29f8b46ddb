"""The tutorial's remote command server, in each of its four versions.

Usage: tutorial_server.py MODE [FMT [WORD]]
  MODE  naive       reply with the raw output, no header (before the fix)
        length-ack  the length as text, wait for the client's answer (any bytes),
                    then the output (the first fix, which the tutorial calls clumsy)
        length-ack-strict
                    the same, but the output is sent only if the answer is exactly
                    b'recv_ready' (or WORD), as the tutorial's own copy checks
        classic  struct.pack(FMT, total) then the output (the fix)
        struct-ack  struct.pack(FMT, total), wait for b'recv_ready' (or WORD), then
                    the output, as learners' code mixing the two fixes does
        json     struct.pack(FMT, len(header)), a JSON header, then the output
  FMT   struct format of the length header, default 'i'

Binds 127.0.0.1 on a free port, prints the port, serves one client, then exits.
Written the way the tutorials write it (recv(1024), subprocess with shell=True), with
sendall so a test is not at the mercy of a short send.
"""
import json
import socket
import struct
import subprocess
import sys

mode = sys.argv[1]
fmt = sys.argv[2] if len(sys.argv) > 2 else 'i'
word = sys.argv[3].encode('utf-8') if len(sys.argv) > 3 else b'recv_ready'

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(('127.0.0.1', 0))
server.listen(5)
print(server.getsockname()[1], flush=True)

conn, addr = server.accept()
while True:
    try:
        cmd = conn.recv(1024)
    except ConnectionResetError:
        break
    if not cmd:
        break
    obj = subprocess.Popen(cmd.decode('utf-8'), shell=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = obj.communicate()
    if mode == 'naive':
        conn.sendall(stdout + stderr)
    elif mode == 'length-ack':
        conn.send(str(len(stdout) + len(stderr)).encode('utf-8'))
        conn.recv(1024)  # the client's "ready"
        conn.sendall(stderr)
        conn.sendall(stdout)
    elif mode == 'length-ack-strict':
        conn.send(str(len(stdout) + len(stderr)).encode('utf-8'))
        data = conn.recv(1024)
        if data == word:
            conn.sendall(stderr)
            conn.sendall(stdout)
    elif mode == 'struct-ack':
        conn.send(struct.pack(fmt, len(stdout) + len(stderr)))
        data = conn.recv(1024)
        if data == word:
            conn.sendall(stderr + stdout)
    elif mode == 'classic':
        conn.sendall(struct.pack(fmt, len(stdout) + len(stderr)))
        conn.sendall(stdout)
        conn.sendall(stderr)
    else:
        header = {'filename': None, 'md5': None, 'total_size': len(stdout) + len(stderr)}
        header_bytes = json.dumps(header).encode('utf-8')
        conn.sendall(struct.pack(fmt, len(header_bytes)))
        conn.sendall(header_bytes)
        conn.sendall(stdout)
        conn.sendall(stderr)
conn.close()
server.close()
