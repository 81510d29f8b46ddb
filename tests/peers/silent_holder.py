"""Holds N connections to 127.0.0.1:PORT open without saying a word, opening a new one
each time the server closes one: a local user crowding a server out.

    python3 silent_holder.py PORT N

Prints "holding N" once all are open; runs until killed.
"""

import selectors
import socket
import sys


def main():
    port, n = int(sys.argv[1]), int(sys.argv[2])
    sel = selectors.DefaultSelector()

    def open_one():
        conn = socket.create_connection(("127.0.0.1", port))
        sel.register(conn, selectors.EVENT_READ)

    for _ in range(n):
        open_one()
    print(f"holding {n}", flush=True)
    while True:
        for key, _ in sel.select():
            conn = key.fileobj
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(conn)
                conn.close()
                open_one()


if __name__ == "__main__":
    main()
