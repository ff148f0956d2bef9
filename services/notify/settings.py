"""Notify's settings: the runtime's, plus the channels, delivery, the directory and the summary.

Every field can be set from the environment as ``DUBAN_<FIELD>`` (``DUBAN_SMTP_HOST``,
``DUBAN_WEBHOOK_SECRET``…), like the runtime's settings it extends.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.runtime.settings import Settings


class NotifySettings(Settings):
    """Settings of one level's notify service."""

    #: E-mail over SMTP; no host means the e-mail channel is off (notices go to the other channels).
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    #: The sender of every e-mail, whichever body's notice it carries (人大 or 政协: the notice is
    #: signed with its organ's name): name it for both.
    mail_from: str = "督办系统 <duban@localhost>"

    #: The key of the HMAC-SHA256 signature of webhook bodies (a receiver's own key may be named by
    #: its directory entry, ``webhook_secret_env``).
    webhook_secret: str = "duban-development-webhook-secret-change-me"
    webhook_timeout_s: float = Field(default=10.0, gt=0)

    #: Delivery: attempts before a send goes to the dead-letter stream, the backoff between them
    #: (doubling from ``retry_base_s`` up to ``retry_max_s``), and how long an attempt recorded as
    #: started may stay without an outcome before it is judged in doubt (a crash mid-send).
    delivery_attempts: int = Field(default=6, ge=1, le=50)
    retry_base_s: float = Field(default=10.0, gt=0)
    retry_max_s: float = Field(default=600.0, gt=0)
    send_lease_s: float = Field(default=120.0, gt=0)
    #: How long the server waits for the sender to acknowledge a request before handing it out
    #: again (a sender that died): longer than a send may take (the SMTP and webhook timeouts).
    send_ack_wait_s: float = Field(default=90.0, gt=0)

    #: Staff's versions of the templates (searched before the packaged ones), the directory file.
    templates_dir: Path | None = None
    directory_file: Path | None = None
    #: How long planning may use the directory as it read it (its own edits apply at once).
    directory_cache_s: float = Field(default=5.0, ge=0)

    #: The monthly summary: the day of the next month it is reported up by (default: the 5th at a
    #: township, the 10th at a county, so the county's report includes its townships' and reaches
    #: Taizhou before the 20th), how often the summary sweep runs, the reply classes that count
    #: as a problem solved (解决问题: A, 已解决或采纳).
    summary_report_day: int | None = Field(default=None, ge=1, le=20)
    summary_interval_s: float = Field(default=3600.0, gt=0)
    solved_classes: list[str] = Field(default_factory=lambda: ["A"], min_length=1)

    #: Public comments (公示意见, sent without signing in): at most so many a minute from one
    #: client address on one disclosure, and so many an hour from one address on all of them
    #: (``services/runtime/http/limits.py``: counted in each HTTP process on its own).
    public_comments_per_minute: int = Field(default=5, ge=1)
    public_comments_per_hour: int = Field(default=30, ge=1)

    #: The bearer token notify presents to intake's command subject when it forwards public
    #: comments; without one it signs a development token with ``jwt_secret`` (HS256 only).
    intake_token: str | None = None
