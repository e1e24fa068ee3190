"""The ctypes declarations against include/loopsec.h, the error table, and
the library lookup."""

import ctypes
import os
import re
import subprocess
import sys
import unittest

if __package__:
    from . import support
else:  # run with -s tests as the top level
    import support

import loopsec
from loopsec import _errors, _ffi, _lib


def _header():
    with open(support.HEADER, encoding="utf-8") as f:
        return f.read()


_CTYPE_OF = {
    "size_t": ctypes.c_size_t, "int": ctypes.c_int,
    "uint16_t": ctypes.c_uint16, "uint32_t": ctypes.c_uint32,
    "int32_t": ctypes.c_int32, "int64_t": ctypes.c_int64, "char": ctypes.c_char,
}


def _struct_members(text, name):
    """[(member, ctype, array length or None)] of `typedef struct name {...}`."""
    m = re.search(r"typedef struct %s \{(.*?)\} %s;" % (name, name), text, re.S)
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    out = []
    for decl in body.split(";"):
        decl = decl.strip()
        if not decl:
            continue
        dm = re.match(r"(\w+)\s+(\w+)(?:\[(\d+)\])?$", decl)
        out.append((dm.group(2), _CTYPE_OF[dm.group(1)],
                    int(dm.group(3)) if dm.group(3) else None))
    return out


@unittest.skipUnless(os.path.isfile(support.HEADER), "no source tree")
class HeaderTest(unittest.TestCase):
    def test_structs_mirror_the_header(self):
        text = _header()
        for cname, cls in (("lsec_opts", _ffi.Opts),
                           ("lsec_peer", _ffi.PeerStruct),
                           ("lsec_port_owner", _ffi.PortOwnerStruct),
                           ("lsec_port_listener", _ffi.PortListenerStruct)):
            want = _struct_members(text, cname)
            got = []
            for fname, ftype in cls._fields_:
                if issubclass(ftype, ctypes.Array):
                    got.append((fname, ftype._type_, ftype._length_))
                else:
                    got.append((fname, ftype, None))
            self.assertEqual(got, want, cname)

    def test_pinned_constants_match_the_header(self):
        text = _header()
        for macro, value in (
                ("LSEC_MODE_AUTH", _ffi.MODE_AUTH),
                ("LSEC_MODE_TLS", _ffi.MODE_TLS),
                ("LSEC_PEER_SAME_USER", _ffi.PEER_SAME_USER),
                ("LSEC_PEER_ANY_USER", _ffi.PEER_ANY_USER),
                ("LSEC_PORT_KERNEL", _ffi.PORT_KERNEL),
                ("LSEC_PORT_RANGE", _ffi.PORT_RANGE),
                ("LSEC_ADDR_ALLOW_127_8", _ffi.ADDR_ALLOW_127_8),
                ("LSEC_OPT_PORT_FALLBACK", _ffi.OPT_PORT_FALLBACK),
                ("LSEC_OPT_HELPER_SURVIVES", _ffi.OPT_HELPER_SURVIVES),
                ("LSEC_OPT_NO_ROUTE_LOCALNET", _ffi.OPT_NO_ROUTE_LOCALNET),
                ("LSEC_LOG_ERROR", _ffi.LOG_ERROR),
                ("LSEC_LOG_DEBUG", _ffi.LOG_DEBUG),
                ("LSEC_PATH_MAX", _ffi.PATH_MAX),
                ("LSEC_ENV_TICKET_FD", _ffi.ENV_TICKET_FD),
                ("LSEC_ENV_ANNOUNCE_FD", _ffi.ENV_ANNOUNCE_FD)):
            m = re.search(r"#define %s (\S+)\n" % macro, text)
            self.assertIsNotNone(m, macro)
            got = m.group(1)
            got = (got.strip('"') if got.startswith('"')
                   else int(got.rstrip("u"), 0))
            self.assertEqual(got, value, macro)
        m = re.search(r"#define LSEC_VERSION_MAJOR (\d+)\s+#define "
                      r"LSEC_VERSION_MINOR (\d+)", text)
        self.assertEqual((int(m.group(1)), int(m.group(2))),
                         _ffi.EXPECTED_VERSION)

    def test_every_declared_function_is_pinned(self):
        # Every public function the header declares has a signature in the
        # table (or is deliberately left out).
        declared = set(re.findall(r"LSEC_API[^;(]*?\b(lsec_\w+)\s*\(",
                                  _header(), re.S))
        unused = {"lsec_ticket_psk"}  # key material: the CLI's job
        self.assertEqual(declared - set(_ffi.SIGNATURES) - unused, set())
        self.assertEqual(set(_ffi.SIGNATURES) - declared, set())


class LibraryTest(unittest.TestCase):
    def test_every_pinned_function_is_exported(self):
        self.assertEqual(_lib.LIB.missing, set())

    def test_unchecked_twins(self):
        # The hot-path twins are the pinned functions, bound again without
        # argtypes: a name outside the table, or a twin that shares the
        # checked function object (so that binding one changed the other),
        # would be a bug.
        lib = _lib.LIB
        self.assertEqual(set(lib.unchecked), set(_ffi.UNCHECKED))
        for name in _ffi.UNCHECKED:
            self.assertIn(name, _ffi.SIGNATURES)
            fn = lib.unchecked[name]
            self.assertIsNot(fn, getattr(lib, name))
            self.assertIsNone(fn.argtypes)
            self.assertIs(fn.restype, _ffi.SIGNATURES[name][0])
            self.assertEqual(getattr(lib, name).argtypes,
                             _ffi.SIGNATURES[name][1])
        # A NULL channel through the twin: the library's own check.
        n = ctypes.c_size_t()
        rc = lib.unchecked["lsec_recv"](ctypes.c_void_p(None),
                                        (ctypes.c_char * 4)(),
                                        ctypes.c_size_t(4), ctypes.byref(n),
                                        0)
        self.assertEqual(rc, _errors.code_of("EINVAL"))

    def test_opts_size(self):
        o = _ffi.Opts()
        _lib.LIB.lsec_opts_init_sized(ctypes.byref(o), ctypes.sizeof(o))
        self.assertEqual(o.size, ctypes.sizeof(o))
        self.assertLessEqual(ctypes.sizeof(o), _lib.LIB.lsec_opts_size())
        self.assertEqual(o.mode, _ffi.MODE_AUTH)
        self.assertEqual(o.peer_policy, _ffi.PEER_SAME_USER)

    def test_version(self):
        major, minor = _lib.EXPECTED_VERSION
        self.assertTrue(loopsec.library_version().startswith(
            "%d.%d." % (major, minor)))

    def test_version_mismatch_is_an_import_error(self):
        class Fake:
            class lsec_version_number:  # noqa: N801 - a fake C function
                restype = argtypes = None

                def __new__(cls):
                    return 99 * 10000 + 1 * 100 + 2
        with self.assertRaises(ImportError) as cm:
            _lib._check_version(Fake, "/x/libloopsec.so")
        self.assertIn("99.1.2", str(cm.exception))
        self.assertIsInstance(cm.exception, _lib.LibraryVersionError)

    def test_abi_policy_while_major_is_0(self):
        # The policy CMakeLists.txt applies to the SONAME: a 0.x minor is an
        # ABI break, so only the same 0.MINOR loads; a patch release does.
        def fake(n):
            class Fake:
                class lsec_version_number:  # noqa: N801 - a fake C function
                    restype = argtypes = None

                    def __new__(cls):
                        return n
            return Fake
        old = _lib.EXPECTED_VERSION
        try:
            _lib.EXPECTED_VERSION = (0, 3)
            _lib._check_version(fake(305), "/x/libloopsec.so")
            for n in (205, 400, 10300):
                with self.assertRaises(_lib.LibraryVersionError):
                    _lib._check_version(fake(n), "/x/libloopsec.so")
            self.assertEqual(_lib.soversion(), "0.3")
            _lib.EXPECTED_VERSION = (1, 3)
            _lib._check_version(fake(10400), "/x/libloopsec.so")
            with self.assertRaises(_lib.LibraryVersionError):
                _lib._check_version(fake(10200), "/x/libloopsec.so")
            self.assertEqual(_lib.soversion(), "1")
        finally:
            _lib.EXPECTED_VERSION = old

    def test_missing_library_is_an_import_error(self):
        env = support.child_env(LOOPSEC_LIBRARY="/nonexistent/libloopsec.so")
        r = subprocess.run([sys.executable, "-c", "import loopsec"], env=env,
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("LibraryNotFoundError", r.stderr)
        self.assertIn("LOOPSEC_LIBRARY", r.stderr)


class ErrorTableTest(unittest.TestCase):
    def test_every_code_has_its_own_class(self):
        self.assertGreaterEqual(len(_errors.CODES), 21)
        seen = set()
        for code, (name, text) in _errors.CODES.items():
            cls = _errors.error_class(code)
            self.assertIsNot(cls, loopsec.Error, name)
            self.assertTrue(issubclass(cls, loopsec.Error))
            self.assertEqual(cls.code, code)
            self.assertNotIn(cls, seen, name)
            seen.add(cls)
            e = _errors.make_error(code, "why")
            self.assertEqual((e.code, e.name, e.detail), (code, name, "why"))
            self.assertEqual(str(e), text + ": why")
            self.assertEqual(getattr(loopsec, name[len("LSEC_"):]), code)

    def test_builtin_bases(self):
        self.assertTrue(issubclass(loopsec.Timeout, TimeoutError))
        self.assertTrue(issubclass(loopsec.WouldBlock, BlockingIOError))
        self.assertTrue(issubclass(loopsec.NotLoopbackError, ValueError))
        self.assertTrue(issubclass(loopsec.UnsafePermissionsError,
                                   PermissionError))
        self.assertTrue(issubclass(loopsec.ConnectionLostError,
                                   loopsec.ClosedError))
        e = _errors.make_error(loopsec.ETIMEDOUT)
        self.assertEqual(str(e), "timed out")

    def test_unknown_code(self):
        e = _errors.make_error(-999, "x")
        self.assertIs(type(e), loopsec.Error)
        self.assertEqual(e.name, "LSEC_UNKNOWN")

    def test_missing_function_raises_not_supported(self):
        stub = _lib._Missing("lsec_nothing")
        with self.assertRaises(loopsec.NotSupportedError) as cm:
            stub()
        self.assertIn("lsec_nothing", str(cm.exception))

    def test_pickle(self):
        import pickle
        e = pickle.loads(pickle.dumps(_errors.make_error(loopsec.EAUTH, "d")))
        self.assertIsInstance(e, loopsec.AuthError)
        self.assertEqual(e.detail, "d")


class HardenTest(unittest.TestCase):
    def test_harden_process_in_a_child(self):
        # Irreversible: only in a child process.
        code = ("import ctypes, resource, loopsec\n"
                "libc = ctypes.CDLL(None)\n"
                "assert libc.prctl(3, 0, 0, 0, 0) == 1\n"  # PR_GET_DUMPABLE
                "loopsec.harden_process()\n"
                "assert libc.prctl(3, 0, 0, 0, 0) == 0\n"
                "assert resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)\n"
                "print('hardened')\n")
        out = subprocess.run([sys.executable, "-c", code], env=support.child_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr.decode())
        self.assertEqual(out.stdout, b"hardened\n")


if __name__ == "__main__":
    unittest.main()


class LayoutTest(unittest.TestCase):
    """The package's modules import each other in one direction only:
    _ffi (declarations) <- _lib (loader) -> _errors (pure), then _core and
    aio.  A cycle would make the import order matter."""

    # module -> the package modules it may import
    ALLOWED = {
        "_ffi": {"_version"},
        "_errors": set(),
        "_lib": {"_ffi", "_errors"},
        "_core": {"_ffi", "_lib", "_errors"},
        "aio": {"_core", "_errors", "_ffi", "_lib"},
    }

    @staticmethod
    def _imports(module):
        import ast
        path = os.path.join(os.path.dirname(loopsec.__file__),
                            module + ".py")
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        out = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    out.add(node.module.split(".")[0])
                else:
                    out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("loopsec"):
                out.add(node.module.split(".")[-1])
        return out

    def test_imports_follow_the_layers(self):
        for module, allowed in self.ALLOWED.items():
            self.assertEqual(self._imports(module) - allowed, set(), module)

    def test_errors_is_pure(self):
        # _errors.py works without the library: a copy loaded on its own
        # (outside the package), bound to fake functions, builds its table
        # from them alone.
        import importlib.util
        path = os.path.join(os.path.dirname(loopsec.__file__), "_errors.py")
        spec = importlib.util.spec_from_file_location("errors_copy", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        names = {-1: b"LSEC_EINVAL", -4: b"LSEC_EAUTH"}
        mod.bind(lambda c: names.get(c, b"LSEC_UNKNOWN")
                 if c != -2 and c != -3 else b"LSEC_EX%d" % -c,
                 lambda c: b"text %d" % -c, lambda: b"why")
        self.assertEqual(mod.code_of("EAUTH"), -4)
        e = mod.last_error(-4)
        self.assertIsInstance(e, mod.AuthError)
        self.assertEqual((e.code, e.detail, e.strerror), (-4, "why", "text 4"))
        self.assertIs(mod.error_class(-2), mod.Error)
        self.assertEqual(len(mod.CODES), 4)
