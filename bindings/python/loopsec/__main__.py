"""python3 -m loopsec: the `check` and `who` commands of the loopsec CLI,
for machines with the library but without the C tool.

Same output and exit status as the C tool (cli/cmd_addr.c): 0 on success,
1 on failure with one line on stderr, 2 on a usage error.
"""

import sys

PROG = "python3 -m loopsec"

COMMAND_USAGE = [
    "check ADDR           may ADDR be used? print its normal form",
    "who [PORT]           who listens on loopback and wildcard addresses",
]
CHECK_USAGE = ("usage: %s check [--allow-127-8] ADDR\n"
               "  exit 0 and print the normal form if ADDR may be used;\n"
               "  otherwise exit 1 with one line on stderr saying why\n" % PROG)
WHO_USAGE = ("usage: %s who [PORT]\n"
             "  without PORT: every TCP listener on a loopback or wildcard\n"
             "  address (0.0.0.0, ::), with address, pid, user, uid and\n"
             "  command; wildcard listeners are marked as reachable from\n"
             "  other hosts.  With PORT: who listens on that port\n" % PROG)
WILDCARD_NOTE = "(wildcard address: reachable from other hosts)"


def _usage(f):
    f.write("usage: %s [--verbose] COMMAND [ARGS]\n\ncommands:\n" % PROG)
    for line in COMMAND_USAGE:
        f.write("  %s %s\n" % (PROG, line))


def _fail(what, err):
    """The C tool's cli_error() line, with library names in the command
    line's words."""
    if err.detail:
        detail = err.detail.replace("LSEC_ADDR_ALLOW_127_8", "--allow-127-8")
        sys.stderr.write("loopsec: %s: %s (%s)\n"
                         % (what, err.strerror, detail))
    else:
        sys.stderr.write("loopsec: %s: %s\n" % (what, err.strerror))
    return 1


def cmd_check(args):
    import loopsec
    allow = False
    addr = None
    opts_done = False
    for a in args:
        if not opts_done and a == "--allow-127-8":
            allow = True
        elif not opts_done and a == "--":
            opts_done = True
        elif not opts_done and a in ("--help", "-h"):
            sys.stdout.write(CHECK_USAGE)
            return 0
        elif not opts_done and a.startswith("-") and a != "-":
            sys.stderr.write("loopsec: check: unknown option (see --help)\n")
            sys.stderr.write(CHECK_USAGE)
            return 2
        elif addr is None:
            addr = a
        else:
            sys.stderr.write("loopsec: check: exactly one ADDR expected\n")
            sys.stderr.write(CHECK_USAGE)
            return 2
    if addr is None:
        sys.stderr.write(CHECK_USAGE)
        return 2
    try:
        print(loopsec.check_address(addr, allow_127_8=allow))
    except loopsec.Error as e:
        if "://" in addr:  # as the C tool's cli_addr_error()
            sys.stderr.write("loopsec: check: a URL is not an address; write "
                             "HOST:PORT, e.g. 127.0.0.1:8080\n")
            return 1
        return _fail("check", e)
    return 0


def _parse_port(text):
    """Plain decimal 1..65535, no sign, no leading zero; else None."""
    if (not 1 <= len(text) <= 5 or not all("0" <= c <= "9" for c in text)
            or (len(text) > 1 and text[0] == "0")):
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def cmd_who(args):
    """Same output as the C tool's `who` (cli/cmd_addr.c)."""
    import loopsec
    if len(args) == 1 and args[0] in ("--help", "-h"):
        sys.stdout.write(WHO_USAGE)
        return 0
    if len(args) > 1:
        sys.stderr.write(WHO_USAGE)
        return 2
    port = None
    if args:
        port = _parse_port(args[0])
        if port is None:
            sys.stderr.write("loopsec: who: PORT must be a number 1..65535\n")
            return 2
    try:
        found = loopsec.listeners(port)
    except loopsec.Error as e:
        return _fail("who", e)
    if port is not None and not found:
        sys.stderr.write("loopsec: who: %s (nobody listens on port %d)\n"
                         % (_strerror(loopsec.ENOTFOUND), port))
        return 1
    if port is not None:
        for e in found:
            user = e.user or "?"
            uid = e.uid if e.uid is not None else -1
            if e.pid is not None and e.pid > 0:
                line = ("%s: pid %d user %s uid %d command %s"
                        % (e.address, e.pid, user, uid, e.command or "?"))
            else:
                line = ("%s: pid ? user %s uid %d command ? (the process is "
                        "not visible to this user)" % (e.address, user, uid))
            print(line + (" " + WILDCARD_NOTE if e.wildcard else ""))
        return 0
    if not found:
        print("no TCP listener on a loopback or wildcard address")
        return 0
    print("%-26s %7s  %-12s %6s  %s" % ("ADDRESS", "PID", "USER", "UID",
                                        "COMMAND"))
    for e in found:
        print("%-26s %7s  %-12s %6d  %s%s" % (
            e.address, e.pid if e.pid is not None and e.pid > 0 else "?",
            e.user or "?", e.uid if e.uid is not None else -1,
            e.command or "?", "  " + WILDCARD_NOTE if e.wildcard else ""))
    return 0


def _strerror(code):
    from ._lib import LIB
    return LIB.lsec_strerror(code).decode("ascii")


COMMANDS = {"check": cmd_check, "who": cmd_who}


def _verbose_log(loopsec):
    """--verbose: the library's log lines on stderr, as the C tool's."""
    import logging
    names = {logging.ERROR: "error", logging.WARNING: "warn",
             logging.INFO: "info", logging.DEBUG: "debug"}

    class Stderr(logging.Handler):
        def emit(self, record):
            sys.stderr.write("loopsec[%s]: %s\n" % (
                names.get(record.levelno, "?"), record.getMessage()))

    log = logging.getLogger("loopsec.cli")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(Stderr())
    loopsec.enable_logging(log, loopsec.LOG_DEBUG)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = False
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        a = argv[i]
        if a in ("--verbose", "-v"):
            verbose = True
        elif a in ("--help", "-h"):
            _usage(sys.stdout)
            return 0
        elif a == "--version":
            import loopsec
            print("loopsec %s (library %s)" % (loopsec.__version__,
                                               loopsec.library_version()))
            return 0
        else:
            _usage(sys.stderr)
            return 2
        i += 1
    if i >= len(argv):
        _usage(sys.stderr)
        return 2
    cmd = COMMANDS.get(argv[i])
    if cmd is None:
        sys.stderr.write("loopsec: unknown command '%s'\n" % argv[i])
        _usage(sys.stderr)
        return 2
    try:
        import loopsec
    except ImportError as e:
        sys.stderr.write("loopsec: %s\n" % e)
        return 1
    if verbose:
        _verbose_log(loopsec)
    return cmd(argv[i + 1:])


if __name__ == "__main__":
    sys.exit(main())
