# rcmd as Ansible's transport: every command, module and file goes through `rcmd client`.
# MIT licence, as the rest of rcmd.

from __future__ import annotations

DOCUMENTATION = r"""
name: rcmd
short_description: Run tasks through rcmd, a remote command runner over TLS
description:
  - Runs each command, module and file transfer through C(rcmd client), one TLS
    connection per command, to an C(rcmd server) on the managed host.
  - Pipelining (one round trip per task, no temporary module files) is supported and
    should be turned on.
  - Commands run as the user the C(rcmd server) runs as; C(remote_user) is not used.
  - Privilege escalation with C(become) works where that user may use it without a
    password (sudo with NOPASSWD, or C(become_method=sudo) as root). A become password
    is sent when the become plugin asks for one (sudo C(-S) reads it from stdin before
    the command's input).
author: rcmd
version_added: 0.1.0
requirements:
  - C(rcmd) on the controller (on C(PATH), or set O(rcmd_path))
  - C(rcmd server) on each managed host, and Python there for modules
extends_documentation_fragment:
  - connection_pipelining
options:
  host:
    description: Address of the host's rcmd server (name, IPv4 or IPv6 address).
    type: str
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_rcmd_host
  port:
    description: Port of the host's rcmd server.
    type: int
    default: 9000
    ini:
      - section: rcmd_connection
        key: port
    env:
      - name: ANSIBLE_RCMD_PORT
    vars:
      - name: ansible_port
      - name: ansible_rcmd_port
  fingerprint:
    description:
      - The server's identity (C(SHA256:...), as C(rcmd fingerprint) prints it on the host).
        Only that server is trusted, and C(known_hosts) is neither read nor written.
      - Without it, the server must be in rcmd's C(known_hosts) (or be this user's own).
    type: str
    vars:
      - name: ansible_rcmd_fingerprint
  accept_new:
    description: Trust a server not yet in rcmd's C(known_hosts) and record it there (C(--accept-new)).
    type: bool
    default: false
    ini:
      - section: rcmd_connection
        key: accept_new
    env:
      - name: ANSIBLE_RCMD_ACCEPT_NEW
    vars:
      - name: ansible_rcmd_accept_new
  token_file:
    description: File holding the server's token (mode 0600). Not needed with a client key the server accepts.
    type: path
    ini:
      - section: rcmd_connection
        key: token_file
    env:
      - name: ANSIBLE_RCMD_TOKEN_FILE
    vars:
      - name: ansible_rcmd_token_file
  client_key:
    description: Client key to present (made by C(rcmd keygen)); by default C(client.pem) in rcmd's configuration directory.
    type: path
    ini:
      - section: rcmd_connection
        key: client_key
    env:
      - name: ANSIBLE_RCMD_CLIENT_KEY
    vars:
      - name: ansible_rcmd_client_key
  connect_timeout:
    description: Seconds to wait for the connection and the server's greeting.
    type: int
    default: 10
    ini:
      - section: rcmd_connection
        key: connect_timeout
    env:
      - name: ANSIBLE_RCMD_CONNECT_TIMEOUT
    vars:
      - name: ansible_rcmd_connect_timeout
  rcmd_path:
    description:
      - The rcmd binary on the controller. A bare name is looked up on C(PATH); a path
        (with a C(/)) is taken as it is, C(~) expanded.
    type: str
    default: rcmd
    ini:
      - section: rcmd_connection
        key: rcmd_path
    env:
      - name: ANSIBLE_RCMD_PATH
    vars:
      - name: ansible_rcmd_path
"""

EXAMPLES = r"""
# inventory.ini
# [web]
# 192.0.2.10 ansible_rcmd_fingerprint=SHA256:...
# [web:vars]
# ansible_connection=rcmd.rcmd.rcmd
# ansible_rcmd_token_file=~/.config/rcmd/web.token
# ansible_pipelining=true
"""

import os
import selectors
import shlex
import shutil
import subprocess
import time

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

display = Display()

# `rcmd client` exits 255 when rcmd itself failed (cannot connect, authentication, the
# connection broke), and says why on a last line starting `rcmd: `; any other status is
# the remote command's.
RCMD_FAILED = 255

# How long to wait for a become plugin's password prompt or success marker.
BECOME_TIMEOUT = 10


class Connection(ConnectionBase):
    """Runs commands through `rcmd client`, one TLS connection per command."""

    transport = 'rcmd.rcmd.rcmd'
    has_pipelining = True

    def _connect(self):
        # Nothing stays open between commands: each is one `rcmd client`, whose own
        # connection and TLS handshake cost a few milliseconds.
        if not self._connected:
            self._binary = self._find_rcmd()
            display.vvv(f'RCMD CONNECTION TO {self._address()} WITH {self._binary}',
                        host=self._play_context.remote_addr)
            self._connected = True
        return self

    def _find_rcmd(self):
        # Not `type: path`, which would make a bare `rcmd` relative to the current
        # directory instead of looking it up on PATH.
        name = self.get_option('rcmd_path')
        if '/' in name:
            name = os.path.expanduser(name)
        found = shutil.which(name)
        if found is None:
            raise AnsibleError(f'rcmd not found: {name!r} (put it on PATH, or set ansible_rcmd_path)')
        return found

    def _address(self):
        host = self.get_option('host')
        if ':' in host and not host.startswith('['):
            host = f'[{host}]'
        return f'{host}:{self.get_option("port")}'

    def _client(self, *flags):
        """`rcmd client` with this host's settings, up to the command."""
        argv = [self._binary, 'client', self._address(), '-T',
                '--connect-timeout', str(self.get_option('connect_timeout'))]
        if self.get_option('fingerprint'):
            argv += ['--fingerprint', self.get_option('fingerprint')]
        elif self.get_option('accept_new'):
            argv.append('--accept-new')
        if self.get_option('token_file'):
            argv += ['--token-file', self.get_option('token_file')]
        if self.get_option('client_key'):
            argv += ['--key', self.get_option('client_key')]
        return argv + list(flags)

    def _spawn(self, argv, stdin, stdout=subprocess.PIPE):
        display.vvv(f'RCMD {shlex.join(argv)}', host=self._play_context.remote_addr)
        try:
            return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
        except OSError as e:
            raise AnsibleError(f'cannot run {argv[0]}: {e}') from e

    def _check_transport(self, code, stderr):
        """A failure of rcmd's own is the host being unreachable, with rcmd's message."""
        if code != RCMD_FAILED:
            return
        lines = to_text(stderr, errors='surrogate_or_replace').rstrip('\n').split('\n')
        if lines[-1].startswith('rcmd: '):
            raise AnsibleConnectionFailure(lines[-1])

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        # Without input the command gets an empty stdin (-n), as ssh -n gives.
        flags = () if in_data is not None or self._become_prompt(sudoable) else ('-n',)
        argv = self._client(*flags, '--', to_text(cmd))
        stdin = subprocess.PIPE if not flags else subprocess.DEVNULL
        p = self._spawn(argv, stdin)
        head_out, head_err = self._answer_become(p, sudoable)
        stdout, stderr = p.communicate(in_data)
        self._check_transport(p.returncode, stderr)
        return p.returncode, head_out + stdout, head_err + stderr

    def _become_prompt(self, sudoable):
        return bool(sudoable and self.become and self.become.expect_prompt())

    def _answer_become(self, p, sudoable):
        """Answers a become password prompt, as Ansible's local connection does: reads
        until the prompt (then sends the password) or the success marker shows, and
        returns what came before it."""
        if not self._become_prompt(sudoable) or not getattr(self.become, '_id', None):
            return b'', b''
        out, err = bytearray(), bytearray()
        sent = False
        deadline = time.monotonic() + BECOME_TIMEOUT
        with selectors.DefaultSelector() as sel:
            sel.register(p.stdout, selectors.EVENT_READ, out)
            sel.register(p.stderr, selectors.EVENT_READ, err)
            while not self.become.check_success(bytes(out)):
                if not sent and (self.become.check_password_prompt(bytes(out))
                                 or self.become.check_password_prompt(bytes(err))):
                    p.stdin.write(to_bytes(self.become.get_option('become_pass') or '') + b'\n')
                    p.stdin.flush()
                    sent = True
                    del out[:], err[:]
                if not sel.get_map():
                    self._check_transport(p.wait(), bytes(err))
                    raise AnsibleError(f'privilege escalation failed: {to_text(bytes(err))}')
                events = sel.select(max(0.0, deadline - time.monotonic()))
                if not events:
                    raise AnsibleConnectionFailure(
                        f'timed out waiting for privilege escalation: {to_text(bytes(out + err))}')
                for key, _ in events:
                    chunk = os.read(key.fileobj.fileno(), 65536)
                    if chunk:
                        key.data.extend(chunk)
                    else:
                        sel.unregister(key.fileobj)
        return bytes(out), bytes(err)

    def put_file(self, in_path, out_path):
        """Streams a file into `cat > OUT` on the host: the client forwards its stdin with
        flow control, so memory stays bounded whatever the size."""
        super().put_file(in_path, out_path)
        display.vvv(f'PUT {in_path} TO {out_path}', host=self._play_context.remote_addr)
        try:
            source = open(to_bytes(in_path, errors='surrogate_or_strict'), 'rb')
        except FileNotFoundError:
            raise AnsibleFileNotFound(f'file or module does not exist: {in_path}') from None
        with source:
            p = self._spawn(self._client('--', f'cat > {shlex.quote(out_path)}'), source)
            _, stderr = p.communicate()
        self._transfer_done(p.returncode, stderr, f'put {in_path} to {out_path}')

    def fetch_file(self, in_path, out_path):
        """Streams `cat IN` on the host into the local file."""
        super().fetch_file(in_path, out_path)
        display.vvv(f'FETCH {in_path} TO {out_path}', host=self._play_context.remote_addr)
        with open(to_bytes(out_path, errors='surrogate_or_strict'), 'wb') as sink:
            p = self._spawn(self._client('-n', '--', f'cat {shlex.quote(in_path)}'),
                            subprocess.DEVNULL, stdout=sink)
            _, stderr = p.communicate()
        self._transfer_done(p.returncode, stderr, f'fetch {in_path} to {out_path}')

    def _transfer_done(self, code, stderr, what):
        self._check_transport(code, stderr)
        if code != 0:
            raise AnsibleError(f'failed to {what}: {to_text(stderr).strip()} (status {code})')

    def reset(self):
        pass

    def close(self):
        self._connected = False
