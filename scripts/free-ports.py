#!/usr/bin/env python3
"""Prints N free loopback TCP ports (default 1), space-separated.

They are bound together, so they are distinct, and released just before the
caller uses them: tests and scripts that start servers in parallel pick
their ports this way instead of fixed ones.
"""
import socket
import sys

count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
socks = []
for _ in range(count):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
