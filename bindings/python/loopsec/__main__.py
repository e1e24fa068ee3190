"""python3 -m loopsec: the `check` and `who` commands of the loopsec CLI.

Same output and exit status as the C tool: 0 on success, 1 on failure with
one line on stderr, 2 on a usage error.
"""

import sys

USAGE = """usage: python3 -m loopsec COMMAND [ARGS]

commands:
  check ADDR           may ADDR be used? print its normal form
  who PORT             who holds a loopback port
"""


def _fail(what, err):
    # The same line as the C tool's cli_error().
    if err.detail:
        sys.stderr.write("loopsec: %s: %s (%s)\n"
                         % (what, err.strerror, err.detail))
    else:
        sys.stderr.write("loopsec: %s: %s\n" % (what, err.strerror))
    return 1


def _usage_error(msg=None):
    if msg:
        sys.stderr.write("loopsec: %s\n" % msg)
    sys.stderr.write(USAGE)
    return 2


def cmd_check(args):
    import loopsec
    if len(args) != 1:
        return _usage_error("usage: check ADDR")
    try:
        print(loopsec.check_address(args[0]))
    except loopsec.Error as e:
        return _fail(args[0], e)
    return 0


def _parse_port(text):
    # Plain decimal only, as the C tool takes it.
    if not text.isdigit() or not text.isascii() or len(text) > 5:
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def cmd_who(args):
    import loopsec
    if len(args) != 1:
        return _usage_error("usage: who PORT")
    port = _parse_port(args[0])
    if port is None:
        return _usage_error("who: invalid port '%s'" % args[0])
    try:
        owner = loopsec.port_owner(port)
    except loopsec.Error as e:
        return _fail("who %d" % port, e)
    if owner is None:
        sys.stderr.write("loopsec: who %d: nobody listens on loopback "
                         "port %d\n" % (port, port))
        return 1
    print("port %d: pid %s, user %s, command %s" % (
        port,
        owner.pid if owner.pid is not None else "?",
        owner.user or (owner.uid if owner.uid is not None else "?"),
        owner.command or "?"))
    return 0


COMMANDS = {"check": cmd_check, "who": cmd_who}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        return _usage_error()
    if argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    cmd = COMMANDS.get(argv[0])
    if cmd is None:
        return _usage_error("unknown command '%s'" % argv[0])
    try:
        return cmd(argv[1:])
    except ImportError as e:
        sys.stderr.write("loopsec: %s\n" % e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
