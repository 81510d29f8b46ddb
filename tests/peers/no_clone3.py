#!/usr/bin/env python3
"""Runs a program with clone3(2) refused, as container runtimes' default seccomp profiles
refused it before they knew it (ENOSYS, so that C libraries fall back to clone).

Usage: no_clone3.py PROGRAM [ARG...]

The filter is installed in this process and passed down through the exec to the program
and everything it starts; nothing else is refused.
"""
import ctypes
import os
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
ENOSYS = 38
# clone3 has the same number on every architecture: it came after the tables were unified.
NR_CLONE3 = 435

BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06


def insn(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    program = b"".join([
        insn(BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        insn(BPF_JEQ_K, 0, 1, NR_CLONE3),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ])
    filters = ctypes.create_string_buffer(program, len(program))
    # struct sock_fprog: an unsigned short count, then (aligned) a pointer to the filters.
    fprog = struct.pack("HxxxxxxP", len(program) // 8, ctypes.addressof(filters))
    fprog_buf = ctypes.create_string_buffer(fprog, len(fprog))
    libc = ctypes.CDLL(None, use_errno=True)
    # Every argument as a long: a pointer passed as a C int would be cut to 32 bits.
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.prctl(
        PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog_buf), 0, 0
    ) != 0:
        err = ctypes.get_errno()
        sys.exit(f"no_clone3: cannot install the filter: {os.strerror(err)}")
    os.execv(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
