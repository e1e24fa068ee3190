#!/usr/bin/env python3
"""The layout of lib/ stays as docs/ARCHITECTURE.md draws it.

    check_layout.py LIBLOOPSEC_INTERNAL.a SOURCE_DIR

- No dependency cycle between lib/ files.  A file depends on another when
  one of its undefined lsec_* / lsec__* symbols is defined there (nm of the
  objects in the archive), so the graph is the real one, not the includes.
- Every lib/*.c is built (a file left out of the CMake lists would be dead).
- No lib/ file is longer than MAX_LINES, except the known ones below.
- Linux-only headers are included only by the platform files (sys_linux*.c).
- The core files make no system call (none of SYSCALLS is referenced by
  their objects): sockets, files and processes are the shell's.
"""

import os
import re
import subprocess
import sys

MAX_LINES = 650
# Files allowed over MAX_LINES (none: keep it so).
KNOWN_LONG = set()
# Linux-only headers (and TCP_INFO: <netinet/tcp.h> itself is POSIX, for
# TCP_NODELAY) outside the platform files, in files the engine work
# owns today (remove an entry when its include moves behind lib/sys.h).
PLATFORM_ONLY = re.compile(
    r'^\s*#\s*include\s*<(linux/[^>]+|sys/(epoll|timerfd|prctl|syscall|'
    r'signalfd|eventfd|inotify)\.h)>|\bTCP_INFO\b', re.M)
KNOWN_PLATFORM_INCLUDES = set()
# The core (docs/ARCHITECTURE.md "Layers") and the calls it must not make.
CORE = {"error.c", "log.c", "init.c", "clock.c", "opts.c", "addr.c",
        "secret.c", "ticket.c", "frame.c", "handshake.c", "tls_ctx.c",
        "tls.c", "spare.c"}
SYSCALLS = {
    "read", "write", "readv", "writev", "open", "open64", "openat", "close",
    "socket", "connect", "accept", "accept4", "bind", "listen", "send",
    "sendto", "sendmsg", "recv", "recvfrom", "recvmsg", "poll", "ppoll",
    "select", "epoll_create1", "epoll_ctl", "epoll_wait", "timerfd_create",
    "timerfd_settime", "fork", "execve", "waitpid", "kill", "pipe", "pipe2",
    "fcntl", "fcntl64", "ioctl", "getsockopt", "setsockopt", "getsockname",
    "getpeername", "fopen", "fopen64", "opendir", "fdopendir", "stat",
    "fstat", "lstat", "stat64", "fstat64", "unlink", "unlinkat", "rename",
    "renameat", "mkdir", "mkdirat", "syscall", "prctl", "dup", "dup2",
}


def symbols(archive):
    """{object: (defined, undefined)} from nm of the archive."""
    out = subprocess.run(["nm", "-A", archive], check=True,
                         capture_output=True, text=True).stdout
    objs = {}
    for line in out.splitlines():
        m = re.match(r"^[^:]*:([^:]+\.o):\s*(?:[0-9a-f]+)?\s+(\w)\s+(\S+)$",
                     line)
        if not m:
            continue
        obj, kind, name = m.groups()
        obj = re.sub(r"\.c\.o$|\.o$", ".c", obj)
        d, u = objs.setdefault(obj, (set(), set()))
        if kind == "U":
            u.add(name)
        elif kind in "TDBRC":
            d.add(name)
    return objs


def graph(objs):
    where = {}
    for obj, (defined, _) in objs.items():
        for s in defined:
            where[s] = obj
    g = {obj: {} for obj in objs}
    for obj, (_, undefined) in objs.items():
        for s in undefined:
            dep = where.get(s) if s.startswith("lsec_") else None
            if dep and dep != obj:
                g[obj].setdefault(dep, s)
    return g


def find_cycle(g):
    """One cycle as a list of files, or None."""
    state = {}
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(g[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def main():
    archive, src = sys.argv[1], sys.argv[2]
    libdir = os.path.join(src, "lib")
    problems = []
    objs = symbols(archive)
    g = graph(objs)
    cycle = find_cycle(g)
    if cycle:
        problems.append("dependency cycle: " + cycle[0] + "".join(
            " -[%s]-> %s" % (g[a][b], b) for a, b in zip(cycle, cycle[1:])))
    for name in sorted(CORE & set(objs)):
        calls = sorted(objs[name][1] & SYSCALLS)
        if calls:
            problems.append("%s is core but calls %s" % (name,
                                                         ", ".join(calls)))
    for name in sorted(os.listdir(libdir)):
        path = os.path.join(libdir, name)
        if not name.endswith((".c", ".h")):
            continue
        if name.endswith(".c") and name not in objs:
            problems.append("%s is not built (not in CMakeLists.txt's "
                            "source lists)" % name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        n = text.count("\n")
        if n > MAX_LINES and name not in KNOWN_LONG:
            problems.append("%s has %d lines (at most %d)" % (name, n,
                                                              MAX_LINES))
        if (not name.startswith("sys_") and name not in
                KNOWN_PLATFORM_INCLUDES and PLATFORM_ONLY.search(text)):
            problems.append("%s includes a Linux-only header (%s): that "
                            "belongs behind lib/sys.h"
                            % (name, PLATFORM_ONLY.search(text).group(0).strip()))
    for p in problems:
        print("check_layout: " + p)
    if not problems:
        print("check_layout: %d files, no cycle" % len(objs))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
