"""A private, throw-away Postfix instance for end-to-end tests.

Everything (config, queue, data, SASL db, TLS files, mailboxes, log) lives
under one directory.  The system Postfix (/etc/postfix) is never touched or
started: the master daemon is run directly in the foreground as our child
(`master -c DIR`), so its lifetime is tied to a Popen handle and it can be
killed by process group even if the test crashes half-way.

Must run as root: master binds ports and starts children as the postfix user,
and virtual(8) delivers as an unprivileged uid.
"""

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time

from daemon import free_ports

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
MASTER = "/usr/lib/postfix/sbin/master"
SASLPASSWD2 = "/usr/sbin/saslpasswd2"

# Debian packages that provide everything this harness (and test_postfix.py) runs.
DEBIAN_PACKAGES = ["postfix", "sasl2-bin", "libsasl2-modules", "swaks",
                   "python3-pytest", "python3-cryptography"]


class PostfixError(RuntimeError):
    pass


def check_prerequisites():
    """Return a human-readable problem string, or None if we can run."""
    missing = [p for p in (POSTFIX, POSTCONF, MASTER, SASLPASSWD2)
               if not os.access(p, os.X_OK)]
    if not shutil.which("swaks"):
        missing.append("swaks")
    if missing:
        return ("missing %s; install the Debian packages: apt-get install %s"
                % (", ".join(missing), " ".join(DEBIAN_PACKAGES)))
    if os.geteuid() != 0:
        return "the private Postfix instance must be started as root"
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return "user 'postfix' / group 'postdrop' missing (is the postfix package installed?)"
    return None




def live_processes(pgid):
    """PIDs of non-zombie processes in process group pgid.  Master's children
    are re-parented to init when it exits; a slow init may leave them as
    zombies for a while, which hold nothing and do not count."""
    pids = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % name) as f:
                # "pid (comm) state ppid pgrp ...": comm may contain spaces.
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(name))
    return pids


MAIN_CF = """\
compatibility_level = 3.6
config_directory = {d}/etc
queue_directory = {d}/queue
data_directory = {d}/data
# No syslog in a container: postlogd(8) writes the log to a file we can read.
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
myhostname = mail.test
mydomain = test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relayhost =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
biff = no
smtpd_banner = $myhostname ESMTP e2e
# Only authenticated clients may submit anything (no relay, no local mail).
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
# Debian's smtpd reads smtpd.conf from $config_directory/sasl whatever this
# says, so point it there too.
cyrus_sasl_config_path = {d}/etc/sasl
smtpd_sasl_local_domain = mail.test
smtpd_sasl_security_options = noanonymous
smtpd_tls_auth_only = yes
smtpd_tls_chain_files = {d}/tls/key.pem, {d}/tls/cert.pem
smtpd_tls_security_level = encrypt
smtpd_tls_loglevel = 1
# Puts protocol/cipher into the Received: header so tests can see TLS was used.
smtpd_tls_received_header = yes
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = texthash:{d}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = {uid}
"""

# chroot is "n" everywhere: a chroot would need copies of /etc files, libs and
# the sasldb inside the queue directory.
MASTER_CF = """\
127.0.0.1:{submission} inet n - n - - smtpd
127.0.0.1:{smtps} inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

SMTPD_CONF = """\
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: {d}/etc/sasl/sasldb2
mech_list: PLAIN LOGIN
"""


class Postfix:
    """Private Postfix: submission port (STARTTLS required) and implicit-TLS
    port, both with SASL AUTH; mail for {rcpt} lands in a Maildir."""

    def __init__(self, root, cert_file, key_file, user="relayuser",
                 password="s3cret-pass", domain="example.test", user2="seconduser",
                 password2="an0ther-pass"):
        self.root = os.path.abspath(root)
        self.cert_file, self.key_file = cert_file, key_file
        self.user, self.password, self.domain = user, password, domain
        # A second mailbox, so tests of two [upstream NAME] logins see each one checked.
        self.user2, self.password2 = user2, password2
        self.rcpt = "inbox@" + domain
        self.maildir = os.path.join(self.root, "mail", domain, "inbox")
        self.log_file = os.path.join(self.root, "maillog")
        self.etc = os.path.join(self.root, "etc")
        self.submission_port = self.smtps_port = None
        self.proc = self.pgid = None

    # ---- setup -------------------------------------------------------------

    def _check_traversable(self):
        # Daemons running as 'postfix' (sasldb) and virtual's uid (mailbox)
        # open absolute paths below root, so every ancestor needs o+x.
        # pytest's tmp_path (/tmp/pytest-of-root, mode 0700) fails this.
        p = self.root
        while True:
            if not os.stat(p).st_mode & 0o001:
                raise PostfixError("%s is not world-traversable; the postfix user "
                                   "could not reach files under %s" % (p, self.root))
            if p == "/":
                return
            p = os.path.dirname(p)

    def _write(self, rel, text, mode=0o644):
        path = os.path.join(self.root, rel)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def configure(self):
        pf = pwd.getpwnam("postfix")
        os.chmod(self.root, 0o755)
        self._check_traversable()
        for sub in ("etc", "etc/sasl", "queue", "data", "tls", "mail"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
            os.chmod(os.path.join(self.root, sub), 0o755)
        # data_directory and the mailbox tree are written by unprivileged daemons.
        os.chown(os.path.join(self.root, "data"), pf.pw_uid, pf.pw_gid)
        os.chown(os.path.join(self.root, "mail"), pf.pw_uid, pf.pw_gid)
        shutil.copy(self.cert_file, os.path.join(self.root, "tls", "cert.pem"))
        shutil.copy(self.key_file, os.path.join(self.root, "tls", "key.pem"))
        os.chmod(os.path.join(self.root, "tls", "key.pem"), 0o600)  # read as root

        self.submission_port, self.smtps_port = free_ports(2)
        fmt = dict(d=self.root, domain=self.domain, uid=pf.pw_uid, gid=pf.pw_gid,
                   submission=self.submission_port, smtps=self.smtps_port)
        self._write("etc/main.cf", MAIN_CF.format(**fmt))
        self._write("etc/master.cf", MASTER_CF.format(**fmt))
        # Trailing slash = Maildir format (one file per message, easy to read).
        self._write("etc/vmailbox", "%s %s/inbox/\n" % (self.rcpt, self.domain))
        self._write("etc/sasl/smtpd.conf", SMTPD_CONF.format(**fmt))

        sasldb = os.path.join(self.etc, "sasl", "sasldb2")
        for user, password in ((self.user, self.password), (self.user2, self.password2)):
            r = subprocess.run([SASLPASSWD2, "-f", sasldb, "-c", "-p", "-u", "mail.test",
                                user], input=password + "\n", text=True,
                               capture_output=True, timeout=20)
            if r.returncode != 0:
                raise PostfixError("saslpasswd2 failed: " + r.stderr)
        # smtpd does the SASL lookup after dropping privileges to 'postfix'.
        os.chown(sasldb, 0, pf.pw_gid)
        os.chmod(sasldb, 0o640)

        # `postfix check` creates the queue subdirectories with the ownership
        # and modes Postfix insists on (post-install create-missing).
        r = self._postfix("check")
        if r.returncode != 0:
            raise PostfixError("postfix check failed:\n" + r.stdout)

    def _postfix(self, *args):
        """Run a postfix(1) command.  Postfix commands print errors only when
        stderr is a terminal (else syslog, absent in a container), so give
        them a pty and collect what they say."""
        ptm, pts = os.openpty()
        try:
            r = subprocess.run([POSTFIX, "-c", self.etc, *args], stdin=subprocess.DEVNULL,
                               stdout=pts, stderr=pts, timeout=60, env=self._env())
            os.close(pts)
            pts = None
            out = b""
            while True:  # the output is a few lines; EIO/empty read = child gone
                try:
                    chunk = os.read(ptm, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            r.stdout = out.decode(errors="replace")
            return r
        finally:
            os.close(ptm)
            if pts is not None:
                os.close(pts)

    def _env(self):
        return dict(os.environ, MAIL_CONFIG=self.etc)

    # ---- lifecycle ---------------------------------------------------------

    def start(self, timeout=20):
        if self.submission_port is None:
            self.configure()
        # Foreground master (no `postfix start`, which daemonizes): its own
        # session, so its pid is the process group of every daemon it spawns
        # and a Ctrl-C aimed at pytest does not hit it before our finalizer.
        with open(os.path.join(self.root, "master.stderr"), "w") as err:
            self.proc = subprocess.Popen([MASTER, "-c", self.etc], env=self._env(),
                                         stdin=subprocess.DEVNULL, stdout=err,
                                         stderr=err, start_new_session=True)
        self.pgid = self.proc.pid
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise PostfixError("postfix master exited with %s:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            # master binds all inet listeners at once, so one banner suffices.
            if self._banner(self.submission_port):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise PostfixError("postfix not ready after %ss:\n%s"
                                   % (timeout, self.log_tail()))
            time.sleep(0.2)

    def _banner(self, port):
        # A 220 banner means master bound the port and smtpd could start.
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                return s.recv(100).startswith(b"220")
        except OSError:
            return False

    def stop(self, timeout=10):
        """SIGTERM master (= `postfix abort`: it signals its children and exits
        without waiting), wait until the whole group is gone, SIGKILL leftovers."""
        if self.proc is None:
            return
        pgid = self.pgid
        if self.proc.poll() is None:
            self.proc.terminate()
        deadline = time.monotonic() + timeout
        while ((self.proc.poll() is None or live_processes(pgid))
               and time.monotonic() < deadline):
            time.sleep(0.1)
        if self.proc.poll() is None or live_processes(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- observation -------------------------------------------------------

    def log(self):
        try:
            with open(self.log_file, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        lines = self.log().splitlines()[-n:]
        try:
            with open(os.path.join(self.root, "master.stderr")) as f:
                lines += f.read().splitlines()[-10:]
        except OSError:
            pass
        return "\n".join(lines)

    def messages(self):
        """Texts of all delivered messages."""
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.maildir, sub)
            if os.path.isdir(d):
                for name in sorted(os.listdir(d)):
                    with open(os.path.join(d, name), errors="replace") as f:
                        out.append(f.read())
        return out

    def find_message(self, marker):
        for m in self.messages():
            if marker in m:
                return m
        return None

    def wait_for_message(self, marker, timeout=20):
        """Return the delivered message containing marker; raise after timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.find_message(marker)
            if m is not None:
                return m
            time.sleep(0.2)
        raise PostfixError("no message with %r delivered within %ss; log tail:\n%s"
                           % (marker, timeout, self.log_tail()))
