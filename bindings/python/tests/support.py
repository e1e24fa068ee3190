"""Shared by the loopsec Python tests.

The tests read LOOPSEC_LIBRARY (the library under test; without it the
package finds the source tree's build) and LOOPSEC_CLI (the C command line,
for comparisons; tests that need it skip without it).
"""

import base64
import contextlib
import os
import sys
import threading
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)              # bindings/python
SRC_ROOT = os.path.dirname(os.path.dirname(PKG_ROOT))
if PKG_ROOT not in sys.path:
    sys.path.insert(0, PKG_ROOT)

import loopsec  # noqa: E402  (after the path is set)
from loopsec._lib import LIB  # noqa: E402

CLI = os.environ.get("LOOPSEC_CLI")
HEADER = os.path.join(SRC_ROOT, "include", "loopsec.h")


def child_env(**extra):
    """Environment for a Python child that must import this loopsec."""
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_ROOT + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["LOOPSEC_LIBRARY"] = LIB.path
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def helper(name):
    """argv that runs tests/<name>.py with this interpreter."""
    return [sys.executable, os.path.join(HERE, name + ".py")]


def secret_forms(ticket):
    """Every text form of the ticket's secret that must never leak: the
    base64url text itself and the raw bytes in hex and standard base64."""
    query = urllib.parse.urlsplit(ticket).query
    text = urllib.parse.parse_qs(query)["secret"][0]
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    forms = {text, raw.hex(), raw.hex().upper(),
             base64.b64encode(raw).decode().rstrip("=")}
    return forms, raw


def b64url(raw):
    """base64url without padding, as tickets spell secrets."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def with_param(ticket, key, value):
    """The ticket with one query parameter replaced."""
    parts = urllib.parse.urlsplit(ticket)
    q = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    q = [(k, value if k == key else v) for k, v in q]
    return urllib.parse.urlunsplit(parts._replace(
        query="&".join("%s=%s" % kv for kv in q)))


def with_port(ticket, port):
    parts = urllib.parse.urlsplit(ticket)
    host = parts.netloc.rsplit(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc="%s:%d" % (host, port)))


def pair(tls=False, **kw):
    """(listener, server channel, client channel), connected."""
    srv = loopsec.listen("127.0.0.1:0", tls=tls, **kw)
    box = {}

    def client():
        try:
            box["ch"] = loopsec.connect(srv.ticket, timeout=10)
        except Exception as e:  # reported by the main thread
            box["err"] = e

    t = threading.Thread(target=client)
    t.start()
    try:
        server = srv.accept(timeout=10)
    finally:
        t.join(15)
    if "err" in box:
        raise box["err"]
    return srv, server, box["ch"]


@contextlib.contextmanager
def paired(tls=False, **kw):
    """pair() as a with block that closes all three at the end."""
    objs = pair(tls, **kw)
    try:
        yield objs
    finally:
        for o in objs:
            o.close()
