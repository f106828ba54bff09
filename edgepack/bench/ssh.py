"""SSH transport (paramiko): push the model and the harness, run, collect JSON, clean up.

- The user's ``~/.ssh/config`` is honoured (HostName, User, Port, IdentityFile,
  UserKnownHostsFile, ProxyCommand); explicit options win over it.
- Host keys are verified against known_hosts (RejectPolicy). ``accept_new_host_key=True``
  records the key of a host that is not known yet (like OpenSSH's accept-new); a key that
  CHANGED is always refused.
- Every remote command is built from fixed text and ``shlex.quote``'d values only.
- The remote temp dir comes from ``mktemp -d`` and is removed in ``finally`` (success, failure,
  timeout, Ctrl-C); a still-running harness is killed first.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edgepack.bench.options import BenchOptions
from edgepack.bench.transport import HARNESS_FILE, harness_path, parse_harness_output
from edgepack.errors import DeviceError, UsageError

DEFAULT_SSH_CONFIG = "~/.ssh/config"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
_SAFE_TMP = re.compile(r"^/[A-Za-z0-9._/-]+$")
_PID_FILE = "harness.pid"
_KNOWN_HOSTS_LOCK = threading.Lock()


@dataclass(frozen=True)
class SshAddress:
    host: str
    user: str | None = None
    port: int | None = None


def parse_address(address: str) -> SshAddress:
    """``[user@]host[:port]``; IPv6 literals in brackets: ``user@[::1]:2222``."""
    text = address.strip()
    if not text:
        raise UsageError("empty SSH address", hint="pass --host user@host[:port]")
    user: str | None = None
    if "@" in text:
        user, _, text = text.rpartition("@")
        if not user:
            raise UsageError(f"bad SSH address {address!r}: empty user", "use user@host")
    port: int | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise UsageError(f"bad SSH address {address!r}", "write IPv6 hosts as [::1]:22")
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"bad SSH address {address!r}", "write IPv6 hosts as [::1]:22")
            port = _port(rest[1:], address)
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = _port(p, address)
    else:
        host = text
    if not host:
        raise UsageError(f"bad SSH address {address!r}: empty host", "use user@host[:port]")
    return SshAddress(host=host, user=user, port=port)


def _port(text: str, address: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"bad port in SSH address {address!r}", "ports are 1-65535")
    return int(text)


class _Cancelled(Exception):
    """The run was cancelled through ``SshTransport.cancel_event``."""


def fingerprint(key: Any) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a paramiko key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class SshTransport:
    kind = "ssh"

    def __init__(
        self,
        host: str,
        *,
        user: str | None = None,
        port: int | None = None,
        identity: str | Path | None = None,
        accept_new_host_key: bool = False,
        python: str = "python3",
        name: str | None = None,
        ssh_config: str | Path | None = DEFAULT_SSH_CONFIG,
        known_hosts: str | Path | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        addr = parse_address(host)
        self.alias = addr.host
        self.name = name or host
        self.accept_new_host_key = accept_new_host_key
        self.python = python or "python3"
        self.connect_timeout = connect_timeout
        cfg = self._lookup_config(addr.host, ssh_config)
        self.hostname: str = cfg.get("hostname") or addr.host
        self.user: str | None = user or addr.user or cfg.get("user")
        cfg_port = cfg.get("port")
        self.port: int = int(port or addr.port or (int(cfg_port) if cfg_port else 22))
        identities = [str(Path(identity).expanduser())] if identity else []
        if not identities:
            identities = [str(Path(p).expanduser()) for p in cfg.get("identityfile", [])]
        self.identities = [p for p in identities if Path(p).is_file()]
        self.missing_identities = [p for p in identities if not Path(p).is_file()]
        if identity and self.missing_identities:
            raise UsageError(
                f"identity file not found: {identity}",
                hint="pass the private key file with --identity (e.g. ~/.ssh/id_ed25519)",
            )
        kh = known_hosts or (cfg.get("userknownhostsfile") or "").split(" ")[0] or None
        self.known_hosts = Path(kh or DEFAULT_KNOWN_HOSTS).expanduser()
        self.proxy_command: str | None = cfg.get("proxycommand")
        if self.proxy_command and self.proxy_command.lower() == "none":
            self.proxy_command = None
        self.last_remote_dir: str | None = None  # for tests and error reports
        # Set by a fleet when the user interrupts it: the run stops, then cleans up.
        self.cancel_event: threading.Event | None = None
        self.cleanup_error: str | None = None
        self.host_key_recorded = False

    @staticmethod
    def _lookup_config(host: str, path: str | Path | None) -> dict[str, Any]:
        if path is None:
            return {}
        p = Path(path).expanduser()
        if not p.is_file():
            return {}
        import paramiko

        try:
            return dict(paramiko.SSHConfig.from_path(str(p)).lookup(host))
        except Exception as exc:  # paramiko raises plain exceptions for bad configs
            raise UsageError(
                f"cannot read SSH config {p}: {exc}",
                hint="fix the file or check it with `ssh -G HOST`",
            ) from exc

    # ----------------------------------------------------------------- identity, connection

    def device_identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.hostname,
            "port": self.port,
            "user": self.user,
            "alias": self.alias if self.alias != self.hostname else None,
        }

    @property
    def where(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.hostname}:{self.port}"

    def connect(self) -> Any:
        import paramiko

        client = paramiko.SSHClient()
        seen: dict[str, Any] = {}
        known_hosts = self.known_hosts
        accept = self.accept_new_host_key

        class _Policy(paramiko.MissingHostKeyPolicy):
            """Reject unknown keys (remembering them for the message), or with
            accept_new_host_key append exactly one line to known_hosts (never rewrite it)."""

            def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
                seen["key"] = key
                if not accept:
                    raise paramiko.SSHException(f"host key of {hostname} is not known")
                line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
                with _KNOWN_HOSTS_LOCK:  # fleet threads may meet the same new host
                    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    have = known_hosts.read_text("utf-8") if known_hosts.is_file() else ""
                    if line not in have.splitlines(keepends=True):
                        with open(known_hosts, "a", encoding="utf-8") as f:
                            f.write(line if not have or have.endswith("\n") else "\n" + line)
                    known_hosts.chmod(0o600)
                client.get_host_keys().add(hostname, key.get_name(), key)
                seen["recorded"] = True

        global_kh = Path("/etc/ssh/ssh_known_hosts")
        for path in (global_kh, self.known_hosts):
            if not path.is_file():
                continue
            try:
                client.load_system_host_keys(str(path))
            except (OSError, paramiko.SSHException) as exc:
                raise DeviceError(
                    f"cannot read known_hosts {path}: {exc}",
                    hint="fix or remove the broken line (ssh-keygen -R HOST)",
                ) from exc
        client.set_missing_host_key_policy(_Policy())
        self.host_key_recorded = False
        sock = paramiko.ProxyCommand(self.proxy_command) if self.proxy_command else None
        try:
            client.connect(
                self.hostname,
                port=self.port,
                username=self.user,
                key_filename=self.identities or None,
                look_for_keys=not self.identities,
                allow_agent=True,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                sock=sock,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise DeviceError(
                f"the host key of {self.where} CHANGED (got {fingerprint(exc.key)}, "
                f"known_hosts has {fingerprint(exc.expected_key)})",
                hint="this may be an attack; if the device was reinstalled, remove the old "
                f"key with: ssh-keygen -f {self.known_hosts} -R {self._kh_name()}",
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise DeviceError(
                f"SSH authentication failed for {self.where}: {exc}",
                hint="pass the right key with --identity, load it into ssh-agent, or set "
                "User/IdentityFile for this host in ~/.ssh/config",
            ) from exc
        except socket.gaierror as exc:
            client.close()
            raise DeviceError(
                f"cannot resolve SSH host {self.hostname!r}: {exc.strerror or exc}",
                hint="check the host name (or its HostName in ~/.ssh/config) and the network",
            ) from exc
        except TimeoutError as exc:
            client.close()
            raise DeviceError(
                f"SSH connection to {self.where} timed out after {self.connect_timeout:g} s",
                hint="is the device powered on and on this network? check the address",
            ) from exc
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            client.close()
            raise DeviceError(
                f"cannot connect to {self.where}: connection refused",
                hint="is sshd running on the device and is the port right? pass "
                "--host user@host:PORT or --port",
            ) from exc
        except OSError as exc:
            client.close()
            raise DeviceError(
                f"cannot connect to {self.where}: {exc.strerror or exc}",
                hint="check the address and port (--host user@host:PORT) and the network",
            ) from exc
        except paramiko.SSHException as exc:
            client.close()
            if "key" in seen:
                raise DeviceError(
                    f"the host key of {self.where} is not in {self.known_hosts} "
                    f"({seen['key'].get_name()} {fingerprint(seen['key'])})",
                    hint="check the fingerprint on the device (ssh-keygen -lf "
                    "/etc/ssh/ssh_host_*.pub), then connect once with ssh or pass "
                    "--accept-new-host-key to record it",
                ) from exc
            why = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "banner" in why.lower():  # something answered, but not an SSH server
                why = "the server on that port does not speak SSH (no SSH banner)"
            raise DeviceError(
                f"SSH to {self.where} failed: {why}",
                hint="check that the device runs an SSH server on that port",
            ) from exc
        self.host_key_recorded = bool(seen.get("recorded"))
        return client

    def _kh_name(self) -> str:
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    # ----------------------------------------------------------------- remote execution

    @staticmethod
    def _exec(
        client: Any, command: str, timeout: float, cancel: threading.Event | None = None
    ) -> tuple[int, str, str]:
        """Runs ``command``; returns (exit code, stdout, stderr).

        Raises TimeoutError after ``timeout`` s, and _Cancelled when ``cancel`` is set.
        """
        chan = client.get_transport().open_session(timeout=timeout)
        try:
            chan.settimeout(1.0)
            chan.exec_command(command)
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while True:
                got = False
                while chan.recv_ready():
                    out += chan.recv(1 << 16)
                    got = True
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(1 << 16)
                    got = True
                if (
                    chan.exit_status_ready()
                    and not chan.recv_ready()
                    and not (chan.recv_stderr_ready())
                ):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"remote command timed out after {timeout:g} s")
                if cancel is not None and cancel.is_set():
                    raise _Cancelled
                if not got:
                    time.sleep(0.005)
            # drain what arrived with the exit status
            while chan.recv_ready():
                out += chan.recv(1 << 16)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(1 << 16)
            return (
                chan.recv_exit_status(),
                out.decode("utf-8", "replace"),
                err.decode("utf-8", "replace"),
            )
        finally:
            chan.close()

    def run(self, model_path: Path, options: BenchOptions) -> dict[str, Any]:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise DeviceError(
                f"model file not found: {model_path}", hint="pass an existing .tflite or package"
            )
        if options.input_file is not None and not Path(options.input_file).is_file():
            raise UsageError(
                f"input data file not found: {options.input_file}", "pass an existing .npy/.npz"
            )
        if options.delegate_is_path and not Path(options.delegate).expanduser().is_file():
            raise UsageError(
                f"delegate library not found: {options.delegate}",
                "pass xnnpack, none, gpu, edgetpu, or the path of an external delegate .so",
            )
        client = self.connect()
        remote_dir: str | None = None
        harness_done = False
        try:
            code, out, err = self._exec(client, "mktemp -d", 30, self.cancel_event)
            remote_dir = out.strip()
            if code != 0 or not _SAFE_TMP.match(remote_dir):
                raise DeviceError(
                    f"`mktemp -d` failed on {self.where}: {(err or out).strip() or code}",
                    hint="the device needs a writable temp dir (TMPDIR or /tmp)",
                )
            self.last_remote_dir = remote_dir
            rdir = PurePosixPath(remote_dir)
            remote_model = str(rdir / model_path.name)
            remote_harness = str(rdir / HARNESS_FILE)
            remote_input = remote_delegate = None
            sftp = client.open_sftp()
            try:
                sftp.put(str(harness_path()), remote_harness)
                sftp.put(str(model_path), remote_model)
                if options.input_file is not None:
                    remote_input = str(rdir / ("input-" + Path(options.input_file).name))
                    sftp.put(str(options.input_file), remote_input)
                if options.delegate_is_path:
                    local_so = Path(options.delegate).expanduser()
                    remote_delegate = str(rdir / ("delegate-" + local_so.name))
                    sftp.put(str(local_so), remote_delegate)
            finally:
                sftp.close()
            argv = [
                *shlex.split(self.python),
                remote_harness,
                f"--graph={remote_model}",
                *options.to_harness_args(input_path=remote_input, delegate_path=remote_delegate),
            ]
            pid_file = shlex.quote(str(rdir / _PID_FILE))
            command = f"echo $$ > {pid_file} && exec " + " ".join(shlex.quote(a) for a in argv)
            try:
                code, out, err = self._exec(client, command, options.timeout_s, self.cancel_event)
                harness_done = True
            except _Cancelled as exc:
                raise DeviceError(
                    f"the benchmark on {self.where} was cancelled",
                    hint="another device's run was interrupted (Ctrl-C); rerun to benchmark it",
                ) from exc
            except TimeoutError as exc:
                raise DeviceError(
                    f"the benchmark on {self.where} did not finish within {options.timeout_s:g} s",
                    hint="lower --runs or --max-seconds, or check that the device is not "
                    "throttling",
                ) from exc
            return parse_harness_output(out, err, code, self.where)
        except OSError as exc:  # SFTP/socket trouble after the connection was made
            raise DeviceError(
                f"SSH transfer to {self.where} failed: {exc}",
                hint="check free space in the device's temp dir and the connection",
            ) from exc
        finally:
            try:
                if remote_dir is not None:
                    self._cleanup(client, remote_dir, harness_may_run=not harness_done)
            finally:
                client.close()

    def _cleanup(self, client: Any, remote_dir: str, harness_may_run: bool) -> None:
        """Kill a harness that may still run (TERM, then KILL after 3 s), then remove the
        remote temp dir. A harness that exited normally is not signalled (its pid may
        already belong to another process)."""
        q = shlex.quote(remote_dir)
        pid_file = shlex.quote(str(PurePosixPath(remote_dir) / _PID_FILE))
        kill = (
            f'pid=$(cat {pid_file} 2>/dev/null); if [ -n "$pid" ] && kill "$pid" 2>/dev/null; '
            'then i=0; while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 30 ]; do sleep 0.1; '
            'i=$((i+1)); done; kill -9 "$pid" 2>/dev/null; fi; '
        )
        command = (kill if harness_may_run else "") + f"rm -rf -- {q}"
        try:
            code, _, err = self._exec(client, command, timeout=30)
        except Exception as exc:  # cleanup must not hide the original error
            self.cleanup_error = f"could not remove {remote_dir} on {self.where}: {exc}"
            return
        if code != 0:
            self.cleanup_error = f"could not remove {remote_dir} on {self.where}: {err.strip()}"
