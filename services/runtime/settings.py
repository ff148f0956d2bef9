"""The settings every service shares, read from the environment (prefix ``DUBAN_``).

Each service extends them with its own (``services/<name>/settings.py``: tracking's deadlines and
reply classes, evaluation's ballot key, notify's channels), on this common base, so one
environment or settings file configures a whole level; ``ServiceBase`` turns the base settings it
is given into its service's own (:meth:`Settings.as_`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound="Settings")


class Settings(BaseSettings):
    """Settings of one service of one level; every field can be set as ``DUBAN_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="DUBAN_", env_file=None, extra="ignore")

    jurisdiction: str = Field(default="331000", pattern=r"^\d{6}(\d{3})?$")
    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias=AliasChoices("DUBAN_NATS_URL", "NATS_URL"))
    #: The CA whose certificate the NATS server shows (deploy/: TLS on every client connection);
    #: None: a plain connection (the embedded server on 127.0.0.1).
    nats_ca_file: Path | None = None
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DUBAN_DATABASE_URL", "DATABASE_URL"))
    data_dir: Path = Path(".duban")

    #: What the CPPCC's registration numbers start with (政协's own book), e.g. ``温政协`` gives
    #: 温政协提〔2026〕1号; None: ``<short name>政协`` (温岭政协提〔2026〕1号). The congress's numbers keep
    #: the seeds' form (温岭建〔2026〕3号).
    cppcc_number_prefix: str | None = Field(default=None, min_length=1, max_length=20)
    #: JetStream de-duplication window: a retried append within it is stored once.
    duplicate_window_s: float = Field(default=600.0, gt=0)
    #: Replicas of the streams this service creates (3 on the hub cluster).
    stream_replicas: int = Field(default=1, ge=1, le=5)
    #: How often a failing message is tried before it goes to the dead-letter stream.
    max_deliver: int = Field(default=5, ge=1)
    projector_batch: int = Field(default=1000, ge=1, le=10_000)
    #: How long an idle consumer's pull request waits at the server (``bus/pull.py``): it is
    #: answered as soon as a message comes, so this costs no latency, only idle requests.
    pull_wait_s: float = Field(default=5.0, gt=0)
    #: Bounded retries of a command that lost an optimistic-concurrency race.
    command_retries: int = Field(default=5, ge=0)

    #: Processes answering this service's HTTP on one port (``http/workers.py``): the first runs
    #: the whole service, the others (``http_worker`` 1..N-1, set by the first) answer HTTP only.
    http_workers: int = Field(default=1, ge=1, le=64)
    http_worker: int = Field(default=0, ge=0)

    #: Write finished spans to ``<data_dir>/traces`` for ``duban trace`` (the embedded default has
    #: no collector; production also sets OTEL_EXPORTER_OTLP_ENDPOINT).
    trace_files: bool = True

    #: Where this level's directory publishes the keys of the tokens it issues (its
    #: ``/.well-known/jwks.json``); their ``iss`` (default ``duban-directory:<jurisdiction>``)
    #: and ``aud``.
    jwks_url: str | None = None
    token_issuer: str | None = None
    token_audience: str = "duban"
    #: Development: sign in by choosing a person, and accept HS256 tokens signed with
    #: ``jwt_secret`` (``duban up`` sets it; production never does).
    dev_signin: bool = False
    jwt_secret: str = "duban-development-secret-change-me"
    #: RS256 public key (PEM) of another issuer whose tokens are accepted besides.
    jwt_public_key: str | None = None

    def as_(self, cls: type[S]) -> S:
        """These settings as ``cls`` (a service's own settings class): what was set here is kept,
        the service's own fields come from the environment or their defaults."""
        if isinstance(self, cls):
            return self
        return cls(**self.model_dump(exclude_unset=True))

    def sqlalchemy_url(self, service: str) -> str:
        """The service's database: ``DATABASE_URL`` if given, else a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        path = self.data_dir / self.jurisdiction / f"{service}.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{path}"
