"""
The runtime directory and its sockets (bytestreamd.runtime), checked on a
real file system: the attacks of issue 8 finding 5 -- a directory of another
user, a ``links -> elsewhere`` symlink, a 1777 directory, a file where the
control socket goes -- each refused with one line naming the path, with
nothing changed, followed or deleted.

The tests that give a directory to another user run as root (the suite does:
bootstrap installs system packages), and uid 65534 is ``nobody``.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile

from twisted.internet.testing import MemoryReactor
from twisted.internet.protocol import Factory
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from bytestreamd.config import Config
from bytestreamd.errors import ConfigError, ResourceLimit
from bytestreamd.local.sockets import listenLinkSocket
from bytestreamd.runtime import RuntimeDirError, prepareRuntimeDir, removeStaleSocket

NOBODY = 65534


def _mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


class _TempDir(SynchronousTestCase):
    def setUp(self):
        # 0755 so that nobody can reach what is below (the subprocess test).
        self.base = tempfile.mkdtemp(prefix="bsd-rt-")
        os.chmod(self.base, 0o755)
        self.addCleanup(shutil.rmtree, self.base, True)
        self.run = os.path.join(self.base, "run")

    def assertRefused(self, words, *args, **kwargs):
        with self.assertRaises(RuntimeDirError) as caught:
            prepareRuntimeDir(*args, **kwargs)
        text = str(caught.exception)
        self.assertNotIn("\n", text)
        self.assertIn(words, text)
        self.assertIsInstance(caught.exception, ConfigError)
        return text


class PrepareRuntimeDirTests(_TempDir):
    def test_createsPrivateDirectories(self):
        self.assertEqual(prepareRuntimeDir(self.run), [])
        self.assertEqual(_mode(self.run), 0o700)
        self.assertEqual(_mode(os.path.join(self.run, "links")), 0o700)

    def test_createsSharedDirectoriesForTheGroup(self):
        gid = os.getgid() + 1
        prepareRuntimeDir(self.run, 0o660, gid)
        for path in (self.run, os.path.join(self.run, "links")):
            self.assertEqual(_mode(path), 0o750)
            self.assertEqual(os.lstat(path).st_gid, gid)

    def test_umaskDoesNotDecide(self):
        old = os.umask(0o077)
        try:
            prepareRuntimeDir(self.run, 0o660)
        finally:
            os.umask(old)
        self.assertEqual(_mode(self.run), 0o750)

    def test_existingPrivateDirectoryIsUsed(self):
        os.mkdir(self.run, 0o700)
        self.assertEqual(prepareRuntimeDir(self.run), [])
        self.assertTrue(os.path.isdir(os.path.join(self.run, "links")))

    def test_otherUsersWorldWritableDirectoryIsRefused(self):
        os.mkdir(self.run)
        os.chmod(self.run, 0o777)
        os.chown(self.run, NOBODY, NOBODY)
        text = self.assertRefused("owned by uid %d" % NOBODY, self.run)
        self.assertIn(self.run, text)
        self.assertEqual(_mode(self.run), 0o777)
        self.assertEqual(os.listdir(self.run), [])

    def test_otherUsersPrivateDirectoryIsRefused(self):
        os.mkdir(self.run, 0o700)
        os.chown(self.run, NOBODY, NOBODY)
        self.assertRefused("owned by uid %d" % NOBODY, self.run)

    def test_linksSymlinkIsNotFollowed(self):
        os.mkdir(self.run, 0o700)
        elsewhere = os.path.join(self.base, "elsewhere")
        os.mkdir(elsewhere, 0o755)
        os.symlink(elsewhere, os.path.join(self.run, "links"))
        text = self.assertRefused("symlink", self.run)
        self.assertIn(os.path.join(self.run, "links"), text)
        self.assertEqual(_mode(elsewhere), 0o755)
        self.assertEqual(os.listdir(elsewhere), [])

    def test_runtimeDirSymlinkIsNotFollowed(self):
        elsewhere = os.path.join(self.base, "elsewhere")
        os.mkdir(elsewhere, 0o777)
        os.chmod(elsewhere, 0o777)
        os.symlink(elsewhere, self.run)
        self.assertRefused("%s is a symlink" % self.run, self.run)
        self.assertEqual(_mode(elsewhere), 0o777)
        self.assertEqual(os.listdir(elsewhere), [])

    def test_ownStickyWorldWritableDirectoryIsRefusedNotChmodded(self):
        os.mkdir(self.run)
        os.chmod(self.run, 0o1777)
        self.assertRefused("writable by group and others (mode 1777)", self.run)
        self.assertEqual(_mode(self.run), 0o1777)

    def test_groupWritableDirectoryIsRefused(self):
        os.mkdir(self.run)
        os.chmod(self.run, 0o770)
        self.assertRefused("writable by group (mode 0770)", self.run)

    def test_readableDirectoryIsUsedAsItIsWithAWarning(self):
        os.mkdir(self.run)
        os.chmod(self.run, 0o755)
        warnings = prepareRuntimeDir(self.run)
        self.assertEqual(_mode(self.run), 0o755)
        self.assertEqual(len(warnings), 1)
        self.assertIn("0755", warnings[0])
        self.assertIn(self.run, warnings[0])

    def test_privateDirectoryWhenSharingWarns(self):
        os.mkdir(self.run, 0o700)
        warnings = prepareRuntimeDir(self.run, 0o660)
        self.assertEqual(_mode(self.run), 0o700)
        self.assertIn("group cannot reach", warnings[0])

    def test_fileIsNotADirectory(self):
        with open(self.run, "w") as f:
            f.write("x")
        self.assertRefused("is not a directory", self.run)
        self.assertTrue(os.path.isfile(self.run))

    def test_worldWritableParentIsRefused(self):
        parent = os.path.join(self.base, "open")
        os.mkdir(parent)
        os.chmod(parent, 0o777)
        path = os.path.join(parent, "run")
        self.assertRefused("parent directory %s is writable by group and others"
                           % parent, path)
        self.assertFalse(os.path.exists(path))

    def test_stickyParentIsFine(self):
        parent = os.path.join(self.base, "tmp")
        os.mkdir(parent)
        os.chmod(parent, 0o1777)
        prepareRuntimeDir(os.path.join(parent, "run"))

    def test_parentOfAnotherUserIsRefused(self):
        parent = os.path.join(self.base, "theirs")
        os.mkdir(parent, 0o755)
        os.chown(parent, NOBODY, NOBODY)
        self.assertRefused("owned by uid %d" % NOBODY, os.path.join(parent, "run"))

    def test_parentsAreCreated(self):
        path = os.path.join(self.base, "a", "b", "run")
        prepareRuntimeDir(path)
        self.assertEqual(_mode(path), 0o700)

    def test_parentThatIsAFile(self):
        parent = os.path.join(self.base, "file")
        open(parent, "w").close()
        self.assertRefused("cannot create its parent directory",
                           os.path.join(parent, "run"))

    def _asNobody(self, path):
        """prepareRuntimeDir in a forked child that became uid nobody."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            status = 0
            try:
                os.close(read)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                try:
                    prepareRuntimeDir(path)
                    message = "ok"
                except RuntimeDirError as e:
                    message = str(e)
                os.write(write, message.encode("utf-8"))
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        os.close(write)
        chunks = []
        while True:
            chunk = os.read(read, 4096)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(read)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(status, 0)
        return b"".join(chunks).decode("utf-8")

    def test_notWritableIsOneLine(self):
        os.mkdir(self.run, 0o500)
        os.mkdir(os.path.join(self.run, "links"), 0o700)
        for path in (self.run, os.path.join(self.run, "links")):
            os.chown(path, NOBODY, NOBODY)
        self.assertEqual(self._asNobody(self.run),
                         "%s: not writable by uid %d; the daemon creates its "
                         "sockets there" % (self.run, NOBODY))

    def test_cannotCreateLinksIsOneLine(self):
        os.mkdir(self.run, 0o500)
        os.chown(self.run, NOBODY, NOBODY)
        self.assertEqual(self._asNobody(self.run),
                         "%s/links: cannot create the directory: Permission denied"
                         % self.run)


class RemoveStaleSocketTests(_TempDir):
    def setUp(self):
        _TempDir.setUp(self)
        self.path = os.path.join(self.base, "control")

    def _bind(self, listen=False):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)
        if listen:
            s.listen(1)
            self.addCleanup(s.close)
        else:
            s.close()  # the file stays: a crashed daemon's socket
        return s

    def test_nothingThere(self):
        removeStaleSocket(self.path)

    def test_staleSocketIsRemoved(self):
        self._bind()
        removeStaleSocket(self.path)
        self.assertFalse(os.path.lexists(self.path))

    def test_liveSocketIsRefused(self):
        self._bind(listen=True)
        with self.assertRaises(RuntimeDirError) as caught:
            removeStaleSocket(self.path)
        self.assertIn("in use", str(caught.exception))
        self.assertTrue(os.path.lexists(self.path))

    def test_regularFileIsKept(self):
        with open(self.path, "w") as f:
            f.write("precious")
        with self.assertRaises(RuntimeDirError) as caught:
            removeStaleSocket(self.path)
        self.assertEqual(str(caught.exception),
                         "%s exists and is not a socket; not removing it" % self.path)
        with open(self.path) as f:
            self.assertEqual(f.read(), "precious")

    def test_directoryIsKept(self):
        os.mkdir(self.path)
        self.assertRaises(RuntimeDirError, removeStaleSocket, self.path)
        self.assertTrue(os.path.isdir(self.path))

    def test_symlinkToASocketIsKept(self):
        target = self.path
        self._bind()
        link = os.path.join(self.base, "link")
        os.symlink(target, link)
        self.assertRaises(RuntimeDirError, removeStaleSocket, link)
        self.assertTrue(os.path.lexists(target) and os.path.islink(link))

    def test_socketOfAnotherUserIsKept(self):
        self._bind()
        os.lchown(self.path, NOBODY, NOBODY)
        with self.assertRaises(RuntimeDirError) as caught:
            removeStaleSocket(self.path)
        self.assertIn("uid %d, not ours" % NOBODY, str(caught.exception))
        self.assertTrue(os.path.lexists(self.path))


class DaemonUseTests(_TempDir):
    """daemon.py and local/sockets.py go through bytestreamd.runtime."""

    def _config(self):
        return Config(jid=JID("alice@example.org/d"), password="x", runtime_dir=self.run,
                      methods=("ibb",))

    def test_controlSocketDoesNotDeleteAFile(self):
        from bytestreamd.daemon import ControlSocketService
        prepareRuntimeDir(self.run)
        path = os.path.join(self.run, "control")
        with open(path, "w") as f:
            f.write("precious")
        reactor = MemoryReactor()
        service = ControlSocketService(reactor, path, Factory(), 0o600, None)
        self.assertRaises(RuntimeDirError, service.startService)
        self.assertTrue(os.path.isfile(path))
        self.assertEqual(reactor.unixServers, [])

    def test_controlSocketReplacesAStaleSocket(self):
        from bytestreamd.daemon import ControlSocketService
        prepareRuntimeDir(self.run)
        path = os.path.join(self.run, "control")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.close()
        reactor = MemoryReactor()
        ControlSocketService(reactor, path, Factory(), 0o600, None).startService()
        self.assertFalse(os.path.lexists(path))  # the MemoryReactor binds nothing
        self.assertEqual(reactor.unixServers[0][0], path)

    def test_daemonStopsWithOneLine(self):
        from bytestreamd.daemon import Daemon
        elsewhere = os.path.join(self.base, "elsewhere")
        os.mkdir(elsewhere, 0o700)
        os.symlink(elsewhere, self.run)
        daemon = Daemon(self._config(), MemoryReactor())
        with self.assertRaises(SystemExit) as caught:
            daemon.startService()
        self.assertEqual(str(caught.exception.code),
                         "bytestreamd: %s is a symlink; refusing to follow it (use "
                         "the real directory, or remove the link)" % self.run)
        self.assertEqual(os.listdir(elsewhere), [])

    def test_linkSocketDoesNotDeleteAFile(self):
        prepareRuntimeDir(self.run)
        path = os.path.join(self.run, "links", "l1")
        open(path, "w").close()
        reactor = MemoryReactor()
        with self.assertRaises(RuntimeDirError) as caught:
            listenLinkSocket(reactor, path, Factory(), 0o600, None)
        self.assertIn(path, str(caught.exception))
        self.assertTrue(os.path.isfile(path))
        self.assertEqual(reactor.unixServers, [])

    def test_linkManagerKeepsAFileAtTheLinkPath(self):
        """A file where a link socket goes: 451 naming it, and it stays."""
        from twisted.internet.testing import MemoryReactorClock

        from bytestreamd.links import LinkManager
        from tests.unit.test_links import FakeSI, FakeXMPP
        prepareRuntimeDir(self.run)
        path = os.path.join(self.run, "links", "deadbeef")
        with open(path, "w") as f:
            f.write("precious")
        si = FakeSI()
        manager = LinkManager(MemoryReactorClock(), self._config(), FakeXMPP(), [si],
                              None, ["ibb"])
        manager._newId = lambda: "deadbeef"
        with self.assertRaises(ResourceLimit) as caught:
            manager.open(JID("bob@example.org/d"), "owner")
        self.assertEqual(caught.exception.code, 451)
        self.assertIn("%s exists and is not a socket" % path, str(caught.exception))
        with open(path) as f:
            self.assertEqual(f.read(), "precious")
        self.assertEqual((manager.links(), si.offers), ([], []))

    def test_linkSocketLeavesNothingWhenChownFails(self):
        prepareRuntimeDir(self.run)
        path = os.path.join(self.run, "links", "l1")
        stopped = []

        class Port:
            def stopListening(self):
                stopped.append(True)

        class Reactor:
            def listenUNIX(self, p, factory, mode, wantPID):
                open(p, "w").close()  # stands in for the socket file
                return Port()

        def refuse(*args):
            raise PermissionError(1, "Operation not permitted")
        self.patch(os, "chown", refuse)
        self.assertRaises(PermissionError, listenLinkSocket, Reactor(), path, Factory(),
                          0o660, 4242)
        self.assertEqual(stopped, [True])

    def test_linkSocketReplacesAStaleSocket(self):
        prepareRuntimeDir(self.run)
        path = os.path.join(self.run, "links", "l1")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.close()
        reactor = MemoryReactor()
        listenLinkSocket(reactor, path, Factory(), 0o600, None)
        self.assertEqual(reactor.unixServers[0][0], path)
