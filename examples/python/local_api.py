#!/usr/bin/env python3
"""A small JSON API served over loopsec, and its client.

The usual way to offer a local API is an HTTP server on 127.0.0.1:62893:
any local user, and any web page in a local browser, can call it.  Here the
same API runs over a loopsec channel: only a process that can read the
connection file (mode 0600, this user's own) can connect, and nothing is
answered before both sides have proved they hold the secret.

    python3 local_api.py serve [--tls] [--ticket-file PATH] [--max-clients N]
    python3 local_api.py get /api/users --ticket-file PATH
    python3 local_api.py demo           # both sides, printing the exchange

A request is one message {"method": "GET", "path": "/api/users"} (POST adds
"body"); the reply is one message {"status": 200, "body": ...}.
"""

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import threading

try:
    import loopsec
except ImportError:  # run from a source checkout: use its bindings
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(
        __file__)), "..", "..", "bindings", "python"))
    import loopsec


class UserStore:
    """The application: a list of users, shared by the client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.users = {1: {"id": 1, "name": "ada"},
                      2: {"id": 2, "name": "grace"}}

    def handle(self, req):
        """One request dict -> (status, body)."""
        method, path = req.get("method"), req.get("path", "")
        parts = [p for p in path.split("/") if p]
        if parts[:2] != ["api", "users"] or len(parts) > 3:
            return 404, {"error": "no such resource: %s" % path}
        with self.lock:
            if len(parts) == 3:
                if method != "GET":
                    return 405, {"error": "method not allowed"}
                user = self.users.get(int(parts[2])) if parts[2].isdigit() \
                    else None
                return (200, user) if user else (404, {"error": "no user"})
            if method == "GET":
                return 200, sorted(self.users.values(), key=lambda u: u["id"])
            if method == "POST":
                name = (req.get("body") or {}).get("name")
                if not isinstance(name, str) or not name:
                    return 400, {"error": "body.name required"}
                uid = max(self.users, default=0) + 1
                self.users[uid] = {"id": uid, "name": name}
                return 201, self.users[uid]
        return 405, {"error": "method not allowed"}


def serve_client(ch, store):
    """Answer requests on one authenticated channel until it closes."""
    with ch:
        try:
            for msg in ch:
                try:
                    req = json.loads(msg)
                    if not isinstance(req, dict):
                        raise ValueError("request must be an object")
                    status, body = store.handle(req)
                except ValueError as e:
                    status, body = 400, {"error": "bad request: %s" % e}
                ch.send(json.dumps({"status": status, "body": body}).encode())
        except loopsec.Error as e:
            print("client dropped: %s" % e, file=sys.stderr)


def serve(args):
    store = UserStore()
    with loopsec.listen("127.0.0.1:0", tls=args.tls,
                        max_accepts=args.max_clients) as srv:
        path = srv.write_file(args.ticket_file)  # 0600; removed on close
        # Tell whoever started us where the connection file is (never the
        # ticket itself: that stays in the file).
        print("ready %s" % path, flush=True)
        threads = []
        while args.max_clients is None or len(threads) < args.max_clients:
            try:
                ch = srv.accept()
            except KeyboardInterrupt:
                break
            t = threading.Thread(target=serve_client, args=(ch, store))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
    return 0


class Client:
    def __init__(self, ticket_file, timeout=5):
        self.ch = loopsec.connect_file(ticket_file, timeout=timeout)
        self.timeout = timeout

    def call(self, method, path, body=None):
        req = {"method": method, "path": path}
        if body is not None:
            req["body"] = body
        self.ch.send(json.dumps(req).encode())
        return json.loads(self.ch.recv(timeout=self.timeout))

    def close(self):
        self.ch.close()


def get(args):
    client = Client(args.ticket_file)
    try:
        print(json.dumps(client.call("GET", args.path), indent=2))
    finally:
        client.close()
    return 0


def _read_line(stream, timeout):
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


def demo(args):
    """Start the server as a separate process, then query it."""
    with tempfile.TemporaryDirectory() as tmp:  # 0700, ours
        ticket_file = os.path.join(tmp, "local_api.ticket")
        server = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "serve",
             "--ticket-file", ticket_file, "--max-clients", "1"]
            + (["--tls"] if args.tls else []),
            stdout=subprocess.PIPE, text=True)
        try:
            line = _read_line(server.stdout, 10)
            if not line.startswith("ready "):
                print("server did not start", file=sys.stderr)
                return 1
            print("server ready, connection file %s (mode %o)" % (
                ticket_file, os.stat(ticket_file).st_mode & 0o777))
            client = Client(ticket_file)
            print("connected: mode=%s, server pid %s" % (
                client.ch.mode, client.ch.peer.pid))
            for method, path, body in (
                    ("GET", "/api/users", None),
                    ("POST", "/api/users", {"name": "linus"}),
                    ("GET", "/api/users/3", None),
                    ("GET", "/api/nothing", None)):
                reply = client.call(method, path, body)
                print("-> %s %s%s" % (method, path,
                                      " " + json.dumps(body) if body else ""))
                print("<- %d %s" % (reply["status"], json.dumps(reply["body"])))
            client.close()
            rc = server.wait(timeout=10)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
            server.stdout.close()
    print("server exited with status %d" % rc)
    return rc


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve the API")
    s.add_argument("--tls", action="store_true", help="run inside TLS 1.3")
    s.add_argument("--ticket-file", help="connection file to write "
                   "(default: under $XDG_RUNTIME_DIR/loopsec/)")
    s.add_argument("--max-clients", type=int, help="exit after N clients")
    g = sub.add_parser("get", help="GET a path and print the reply")
    g.add_argument("path")
    g.add_argument("--ticket-file", required=True)
    d = sub.add_parser("demo", help="run a server and a client")
    d.add_argument("--tls", action="store_true")
    args = p.parse_args(argv)
    try:
        return {"serve": serve, "get": get, "demo": demo}[args.cmd](args)
    except loopsec.Error as e:
        print("local_api: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
