"""The tutorial's remote command client, in each of its four versions.

Usage: tutorial_client.py MODE PORT [FMT] < commands
  MODE naive | length-ack | classic | json, as in tutorial_server.py, or
       struct-ack: struct.pack(FMT, n), answer b'recv_ready', then n bytes;
       length-ack-once: length-ack, taking the output with one recv(length) as the
       shortest copies of the tutorial do

Sends each non-empty line of stdin as a command to 127.0.0.1:PORT and prints each reply
on one line as hex, so a test can compare replies byte for byte.
"""
import json
import socket
import struct
import sys

mode = sys.argv[1]
port = int(sys.argv[2])
fmt = sys.argv[3] if len(sys.argv) > 3 else 'i'


def recv_exact(sock, n):
    data = b''
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError('server closed the connection')
        data += chunk
    return data


def recv_body(sock, total_size):
    # The tutorial's loop: keep reading 1024 bytes until total_size arrived.
    recv_size = 0
    recv_data = b''
    while recv_size < total_size:
        data = sock.recv(1024)
        recv_data += data
        recv_size += len(data)
    return recv_data


phone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
phone.connect(('127.0.0.1', port))
for line in sys.stdin:
    cmd = line.strip()
    if not cmd:
        continue
    phone.send(cmd.encode('utf-8'))
    if mode == 'naive':
        reply = phone.recv(1024)
    elif mode == 'length-ack':
        length = int(phone.recv(1024).decode('utf-8'))
        phone.send(b'recv_ready')
        reply = recv_body(phone, length)
    elif mode == 'length-ack-once':
        length = int(phone.recv(1024).decode('utf-8'))
        phone.send(b'recv_ready')
        reply = phone.recv(length) if length else b''
    elif mode == 'struct-ack':
        total_size = struct.unpack(fmt, recv_exact(phone, struct.calcsize(fmt)))[0]
        phone.send(b'recv_ready')
        reply = recv_body(phone, total_size)
    elif mode == 'classic':
        total_size = struct.unpack(fmt, recv_exact(phone, struct.calcsize(fmt)))[0]
        reply = recv_body(phone, total_size)
    else:
        header_len = struct.unpack(fmt, recv_exact(phone, struct.calcsize(fmt)))[0]
        header = json.loads(recv_exact(phone, header_len).decode('utf-8'))
        reply = recv_body(phone, header['total_size'])
    print(reply.hex(), flush=True)
phone.close()
