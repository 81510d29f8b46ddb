"""The tutorial's client before the fix: send a command, take one recv(1024) as the reply.

Usage: python3 demos/naive_client.py [HOST] [PORT]      (default 127.0.0.1 9000)

Talks to `rcmd server --naive`. Type `seq 1 1000`, then `echo hello`, and watch the reply
to `echo hello` be more of seq's output. Standard library only.
"""
import socket
import sys

host = sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1'
port = int(sys.argv[2]) if len(sys.argv) > 2 else 9000

phone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
phone.connect((host, port))

while True:
    try:
        cmd = input('>>: ').strip()
    except EOFError:
        break
    if not cmd:
        continue
    if cmd == 'exit':
        break
    phone.send(cmd.encode('utf-8'))
    data = phone.recv(1024)
    print(data.decode('utf-8', errors='replace'))

phone.close()
