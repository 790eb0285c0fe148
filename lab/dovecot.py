"""A private Dovecot serving the lab's Maildirs (:class:`lab.maildir.MaildirStore`) over IMAP.

The instance is the lab's own: its configuration, sockets, state, log and passwd file live
in ``base_dir``; it listens on one port on the given loopback addresses, plain IMAP only
(``ssl = no`` is fine on loopback; :class:`probes.imap_reader.ImapReader` refuses tls=none
elsewhere). Users are passwd-files with salted SHA-512 hashes, never the passwords: one file
per user (``passwd.d/<address>``), because Dovecot looks at a passwd-file at most once a
second and would miss a user added within a second of a login; a new file is read at once.

Dovecot never gives mail access to root. Run as root (CI), the mail processes run as
``nobody`` with group root, chrooted into ``mail_root`` (so its parents may stay private),
reading the group-writable trees MaildirStore writes; the auth process runs as root to
read the 0600 passwd file. Run as a normal user, every process is that user.

``base_dir`` must be short: Dovecot's unix sockets live there and a socket path is limited
to 107 bytes.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import hashlib
import imaplib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from deliver.errors import SokuresError
from lab.maildir import LAYOUTS, home_of
from lab.service import Service

__all__ = ["Dovecot", "DovecotError", "find_dovecot", "render_config"]

ROOT_MAIL_USER = "nobody"
_LONGEST_SOCKET = len("/login/imap-hibernate") + 8  # with room to spare
_START_TIMEOUT = 15.0


class DovecotError(SokuresError, RuntimeError):
    """The lab's Dovecot cannot be set up or started; names the reason and the log."""


def find_dovecot() -> str | None:
    """The dovecot program (/usr/sbin/dovecot when Debian's dovecot-imapd is installed)."""
    if os.access("/usr/sbin/dovecot", os.X_OK):
        return "/usr/sbin/dovecot"
    return shutil.which("dovecot")


def ssha512(password: str) -> str:
    """A passwd-file password in Dovecot's {SSHA512} scheme: SHA-512(pw + salt) + salt."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "{SSHA512}" + base64.b64encode(digest + salt).decode()


def _spam_mailboxes() -> str:
    # RFC 6154 \Junk on each layout's spam folder; auto = no: only folders a layout
    # created exist, so each user lists its own provider's spam folder
    names = sorted({layout.spam_folder for layout in LAYOUTS.values()})
    return "".join(
        f'  mailbox "{name}" {{\n    special_use = \\Junk\n    auto = no\n  }}\n' for name in names
    )


def render_config(
    base_dir: Path,
    mail_root: Path,
    passwd_dir: Path,
    listen: Sequence[str],
    port: int,
    *,
    as_root: bool,
) -> str:
    """The dovecot.conf of a private instance (see the module docstring)."""
    addresses = " ".join(_listen_address(a) for a in listen)
    lines = [
        f"base_dir = {base_dir}",
        f"state_dir = {base_dir / 'state'}",
        f"log_path = {base_dir / 'dovecot.log'}",
        f"instance_name = sokures-lab-{port}",
        "protocols = imap",
        f"listen = {addresses}",
        "ssl = no",
        "disable_plaintext_auth = no",
        "auth_mechanisms = plain login",
        "auth_failure_delay = 0",  # loopback lab: a wrong password should fail fast
        "mail_location = maildir:~/Maildir",
        "first_valid_gid = 0",
    ]
    if as_root:
        lines += [
            f"mail_uid = {ROOT_MAIL_USER}",
            "mail_gid = root",
            "first_valid_uid = 1",
            f"valid_chroot_dirs = {mail_root}",
        ]
    else:
        me = pwd.getpwuid(os.geteuid())
        lines += [
            f"default_login_user = {me.pw_name}",
            f"default_internal_user = {me.pw_name}",
            f"default_internal_group = {grp.getgrgid(os.getegid()).gr_name}",
            f"first_valid_uid = {me.pw_uid}",
        ]
    passwd = f"{passwd_dir}/%Lu"  # auth_username_chars keeps "/" out of user names
    config = "\n".join(lines) + "\n"
    config += (
        f"passdb {{\n  driver = passwd-file\n"
        f"  args = scheme=SSHA512 username_format=%Lu {passwd}\n}}\n"
        f"userdb {{\n  driver = passwd-file\n  args = username_format=%Lu {passwd}\n}}\n"
        "service imap-login {\n"
        f"  inet_listener imap {{\n    address = {addresses}\n    port = {port}\n  }}\n"
        "  inet_listener imaps {\n    port = 0\n  }\n" + ("" if as_root else "  chroot =\n") + "}\n"
    )
    if as_root:
        config += "service auth {\n  user = root\n}\n"
    else:
        config += "service anvil {\n  chroot =\n}\n"  # only root can chroot
    namespace = "namespace inbox {\n  inbox = yes\n  separator = /\n" + _spam_mailboxes()
    return config + namespace + "}\n"


def _listen_address(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host.strip("[]"), 0))
        return int(s.getsockname()[1])


class Dovecot(Service):
    """A private Dovecot serving ``mail_root`` (a MaildirStore root) to ``users``.

    ``users`` maps each address to its password. ``port`` 0 picks a free port.
    """

    def __init__(
        self,
        base_dir: Path,
        mail_root: Path,
        users: Mapping[str, str],
        listen: Sequence[str] = ("127.0.0.1",),
        port: int = 0,
    ) -> None:
        if not listen:
            raise DovecotError("dovecot: no listen address")
        self.base_dir = Path(base_dir).absolute()
        if len(str(self.base_dir)) + _LONGEST_SOCKET > 107:
            raise DovecotError(f"dovecot: base_dir too long for unix sockets: {self.base_dir}")
        self.mail_root = Path(mail_root).absolute()
        self.listen = tuple(listen)
        self.port = port or _free_port(self.listen[0])
        self._as_root = os.geteuid() == 0
        self._users: dict[str, str] = {}
        for address, password in users.items():
            home_of(self.mail_root, address)  # a valid address
            self._users[address.strip().lower()] = password
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"Dovecot({str(self.base_dir)!r}, port={self.port}, users={len(self._users)})"

    @property
    def pid(self) -> int | None:
        """The master process id while running (also in ``base_dir/master.pid``)."""
        return None if self._process is None else self._process.pid

    @property
    def users(self) -> list[str]:
        return sorted(self._users)

    @property
    def config_path(self) -> Path:
        # not base_dir/dovecot.conf: Dovecot makes that a symlink to the config it runs
        return self.base_dir / "sokures-dovecot.conf"

    @property
    def passwd_dir(self) -> Path:
        return self.base_dir / "passwd.d"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "dovecot.log"

    def add_user(self, address: str, password: str) -> None:
        """Add (or change) a user; Dovecot re-reads the passwd file when it changes."""
        home_of(self.mail_root, address)
        address = address.strip().lower()
        self._users[address] = password
        if self.passwd_dir.exists():
            self._write_passwd(address, password)

    def _home(self, address: str) -> str:
        home = home_of(self.mail_root, address)
        if self._as_root:
            # "<chroot>/./<home>": Dovecot chroots to mail_root (valid_chroot_dirs)
            return f"{self.mail_root}/./{home.relative_to(self.mail_root)}"
        return str(home)

    def _write_passwd(self, address: str, password: str) -> None:
        line = f"{address}:{ssha512(password)}::::{self._home(address)}::\n"
        tmp = self.passwd_dir / f".{address}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            os.fchmod(fd, 0o600)  # whatever the umask
            out.write(line)
        os.replace(tmp, self.passwd_dir / address)

    def _prepare(self) -> str:
        program = find_dovecot()
        if program is None:
            raise DovecotError("dovecot is not installed (Debian package dovecot-imapd)")
        if self._as_root:
            try:
                pwd.getpwnam(ROOT_MAIL_USER)
            except KeyError:
                raise DovecotError(f"dovecot: no user {ROOT_MAIL_USER!r} to read mail as") from None
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.mail_root.mkdir(parents=True, exist_ok=True)
        st = self.mail_root.stat()
        if st.st_uid == os.geteuid():
            self.mail_root.chmod(st.st_mode & 0o7777 | 0o050)  # the mail group goes through
            st = self.mail_root.stat()
        if self._as_root and (st.st_gid != 0 or st.st_mode & 0o050 != 0o050):
            raise DovecotError(
                f"dovecot: {self.mail_root} must be group root and group-searchable "
                f"(its mail processes run as {ROOT_MAIL_USER} with group root)"
            )
        self.passwd_dir.mkdir(mode=0o700, exist_ok=True)
        self.passwd_dir.chmod(0o700)
        for address, password in self._users.items():
            self._write_passwd(address, password)
        self.config_path.write_text(
            render_config(
                self.base_dir,
                self.mail_root,
                self.passwd_dir,
                self.listen,
                self.port,
                as_root=self._as_root,
            )
        )
        return program

    def start(self) -> None:
        """Start Dovecot; return when it accepts a connection and a LOGIN works."""
        if self._process is not None:
            return
        program = self._prepare()
        output = (self.base_dir / "startup.log").open("wb")
        with output:
            self._process = subprocess.Popen(
                [program, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        reason = "no answer"
        host = self.listen[0].strip("[]")
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise self._failed(f"exited with status {self._process.returncode}")
            try:
                self._check_login(host)
                return
            except (OSError, imaplib.IMAP4.error) as exc:
                reason = type(exc).__name__ if isinstance(exc, OSError) else "LOGIN refused"
            time.sleep(0.05)
        raise self._failed(f"not ready after {_START_TIMEOUT:.0f} s ({reason})")

    def _check_login(self, host: str) -> None:
        conn = imaplib.IMAP4(host, self.port, timeout=2.0)
        try:
            if self._users:
                address, password = next(iter(sorted(self._users.items())))
                conn.login(address, password)
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()

    def _failed(self, what: str) -> DovecotError:
        tail: list[str] = []
        for path in (self.base_dir / "startup.log", self.log_path):
            with contextlib.suppress(OSError):
                tail += path.read_text(errors="replace").splitlines()
        shown = " | ".join(line.strip() for line in tail[-4:] if line.strip()) or "no log"
        return DovecotError(f"dovecot {what}: {shown} (log: {self.log_path})")

    def stop(self) -> None:
        """Stop the master (it stops its children) and wait for it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
