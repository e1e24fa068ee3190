"""examples/python/local_api.py runs end to end."""

import json
import os
import subprocess
import sys
import unittest

if __package__:
    from . import support
else:  # run with -s tests as the top level
    import support

EXAMPLE = os.path.join(support.SRC_ROOT, "examples", "python", "local_api.py")


@unittest.skipUnless(os.path.isfile(EXAMPLE), "no source tree")
class LocalApiTest(unittest.TestCase):
    def test_demo(self):
        for extra in ([], ["--tls"]):
            with self.subTest(args=extra):
                r = subprocess.run([sys.executable, EXAMPLE, "demo"] + extra,
                                   capture_output=True, text=True,
                                   timeout=60, env=support.child_env())
                self.assertEqual(r.returncode, 0, r.stderr)
                out = r.stdout
                self.assertIn("(mode 600)", out)
                self.assertIn("mode=%s" % ("tls" if extra else "auth"), out)
                self.assertIn('<- 200 [{"id": 1, "name": "ada"}', out)
                self.assertIn('<- 201 {"id": 3, "name": "linus"}', out)
                self.assertIn("<- 404", out)
                self.assertIn("server exited with status 0", out)
                self.assertNotIn("secret=", out + r.stderr)

    def test_store(self):
        sys.path.insert(0, os.path.dirname(EXAMPLE))
        try:
            import local_api
        finally:
            sys.path.pop(0)
        store = local_api.UserStore()
        self.assertEqual(store.handle({"method": "GET", "path": "/api/users/1"}),
                         (200, {"id": 1, "name": "ada"}))
        self.assertEqual(store.handle({"method": "DELETE",
                                       "path": "/api/users"})[0], 405)
        self.assertEqual(store.handle({"method": "POST", "path": "/api/users",
                                       "body": {}})[0], 400)
        json.dumps(store.handle({"method": "GET", "path": "/api/users"}))


if __name__ == "__main__":
    unittest.main()
