"""What every service process of one level shares: its workers kept running, idleness for tests,
what operators watch (``/metrics``, ``/status``), tracing set-up, and serving HTTP until SIGTERM.

A service's ``app.py`` subclasses :class:`ServiceBase`, creates its projectors and workers in
``start()`` and hands them to :meth:`ServiceBase.run_workers`; :func:`serve` runs it with its
FastAPI app under uvicorn, which on SIGTERM stops taking requests and finishes those in flight,
after which the workers stop after their current batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

import uvicorn
from fastapi import FastAPI
from nats.aio.client import Client as NATS
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import subjects
from services.runtime.bus import sources
from services.runtime.bus.consumer import DurableWorker
from services.runtime.bus.nats_commands import Register, command_broker
from services.runtime.bus.pull import PullConsumer, Reconnected
from services.runtime.bus.reactions import Reactions
from services.runtime.bus.replay import ReplayResponder
from services.runtime.bus.sources import Source
from services.runtime.es.eventstore import EventStore
from services.runtime.es.unavailable import unavailable
from services.runtime.http.app import UnavailableWhileDisconnected, readiness_router
from services.runtime.http.auth import verifier_for
from services.runtime.http.workers import Helpers, exit_with_parent, helper_command, listening_socket, report_ready
from services.runtime.observe.metrics import Watched, metrics_router
from services.runtime.observe.telemetry import setup_tracing
from services.runtime.read.people import DisabledPeople, OrgProjection, PeopleProjection
from services.runtime.read.projector import Projection, Projector, read_position
from services.runtime.settings import Settings
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger("duban.service")

#: The context whose events say who the level's people are (``services/directory``).
DIRECTORY = "directory"


class ServiceBase:
    """The running parts of one service of one level."""

    context: str
    engine: AsyncEngine
    #: The service's own settings class (``services/<name>/settings.py``), on the common base.
    settings_class: ClassVar[type[Settings]] = Settings

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.as_(self.settings_class)
        settings = self.settings
        self.here = settings.jurisdiction
        #: False in a helper process that answers HTTP only (``http/workers.py``): its workers and
        #: loops are not run, the first process runs them.
        self.background = settings.http_worker == 0
        self.nc: NATS | None = None
        self.workers: list[PullConsumer] = []
        self.streams: list[str] = []
        #: Mirrors of other levels' streams kept on this server, reported in /metrics and /status.
        self.mirrors: list[str] = []
        self._tasks: list[asyncio.Task] = []
        self._replays: ReplayResponder | None = None
        self._loops: list[asyncio.Task] = []

    # -- what a service runs, declared in its app.py ------------------------------------------
    def projector(self, projection: Projection, source: Source, *, engine: AsyncEngine | None = None) -> Projector:
        """A projector of ``projection`` over ``source`` into the service's database."""
        return Projector(
            self.nc,
            projection,
            engine or self.engine,
            stream=source.stream,
            filter_subjects=list(source.filter_subjects),
            jurisdiction=self.here,
            context=self.context,
            settings=self.settings,
        )

    def reactor(
        self, reactions: Reactions, source: Source, *, durable: str, verb: str, **options: Any
    ) -> DurableWorker:
        """A durable worker running ``reactions`` on ``source`` (``reactions.py``); ``options``
        are the worker's (``concurrency``, ``ack_wait_s``, ``settings``, ...). Without a
        ``concurrency`` of their own, the reactions' (messages of one aggregate in order)."""
        if "concurrency" not in options:
            options |= {"concurrency": reactions.concurrency, "key": reactions.key}
        return DurableWorker(
            self.nc,
            stream=source.stream,
            durable=durable,
            handle=reactions.handle,
            wants=reactions.wants,
            jurisdiction=self.here,
            context=self.context,
            span_name=f"{verb} {source.span_subject}",
            filter_subjects=list(source.filter_subjects),
            settings=options.pop("settings", self.settings),
            **options,
        )

    async def directory_projectors(self) -> list[Projector]:
        """Projectors of this level's directory (people, organisations) into the service's own
        database (``read/people.py``), under names of this service; the directory's stream is
        created here if the directory has not started yet."""
        assert self.nc is not None
        directory = EventStore(self.nc, context=DIRECTORY, jurisdiction=self.here, settings=self.settings)
        await directory.ensure_streams(snapshots=False)
        source = sources.events(DIRECTORY, self.here)
        return [
            self.projector(type(cls.__name__, (cls,), {"name": f"{self.context}_{cls.name}"})(), source)
            for cls in (PeopleProjection, OrgProjection)
        ]

    async def run_workers(self, workers: Sequence[PullConsumer]) -> None:
        """Prepare each worker (its durable consumer) and keep it running in a task; answer
        operators' replay requests for the dead letters of the durable workers (``bus/replay.py``).
        In a helper process (``background`` False) nothing is run: the workers are only known, so
        that its ``/status`` reports them (read from the server) as the first process does."""
        if not self.background:
            self.workers.extend(workers)
            return
        for worker in workers:
            await worker.prepare()
            self.workers.append(worker)
            self._tasks.append(asyncio.create_task(self._keep_running(worker), name=f"{self.context}-{worker.durable}"))
        if self._replays is not None:
            await self._replays.stop()
        assert self.nc is not None
        self._replays = ReplayResponder(
            self.nc,
            jurisdiction=self.here,
            context=self.context,
            handlers={w.durable: w.handle for w in self.workers if isinstance(w, DurableWorker)},
        )
        await self._replays.start()

    def run_task(self, run: Callable[[], Awaitable[None]], name: str, *, helper: bool = False) -> None:
        """A periodic loop of the service (a sweep); cancelled at once when the service stops.
        In a helper process (``background`` False) it is run only if it is the ``helper``'s own."""
        if not self.background and not helper:
            return
        self._loops.append(asyncio.create_task(run(), name=f"{self.context}-{name}"))

    async def _keep_running(self, worker: PullConsumer) -> None:
        """A worker that fails is logged and restarted, never silently gone. It is prepared again
        first (its consumer bound anew; a projector's positioned from its checkpoint, so what it
        had fetched and not acknowledged comes again at once), retrying while NATS is away. A
        worker that stopped because the connection was made again (``Reconnected``) is no
        failure: a warning, and prepared again at once (a restarted server's JetStream may take a
        few seconds to answer: the tries in between are warnings too)."""
        while True:
            try:
                await worker.run()
                return
            except asyncio.CancelledError:
                raise
            except Reconnected:
                log.warning("reconnected to NATS, worker prepared again", extra={"worker": worker.durable})
                delay = 0.0
            except Exception:
                log.exception("worker failed, restarting", extra={"worker": worker.durable})
                delay = 1.0
            while True:
                await asyncio.sleep(delay)
                try:
                    await worker.prepare()
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    log.warning("worker not prepared, retrying", extra={"worker": worker.durable, "error": repr(err)})
                    delay = min(max(delay * 2, 0.2), 10.0)

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until every worker has handled everything waiting now (tests, demos)."""
        assert self.nc is not None
        js = self.nc.jetstream()
        async with asyncio.timeout(timeout):
            for worker in self.workers:
                while True:
                    info = await js.consumer_info(worker.stream, worker.durable)
                    if info.num_pending == 0 and info.num_ack_pending == 0:
                        break
                    await asyncio.sleep(0.05)

    def reconnected(self) -> None:
        """The connection to NATS was made again: every worker's fetch that waits now ends (a
        restarted server has lost its pull request, which would be waited out), and a projector
        then makes its consumer again from its checkpoint (``Reconnected``)."""
        for worker in self.workers:
            worker.wake()

    def connected(self) -> bool:
        """Whether this process's NATS connection is up (a service that has not connected yet
        counts as up: its start-up fails loudly on its own)."""
        return self.nc is None or self.nc.is_connected

    async def readiness(self) -> list[dict[str, str]]:
        """Why this service cannot do its work now (empty: ready): NATS disconnected, JetStream
        not answering, its database not answering. Each check waits at most two seconds."""
        reasons = []
        if self.nc is None:
            reasons.append({"code": "starting", "message": "服务正在启动"})
        elif not self.nc.is_connected:
            reasons.append({"code": "nats_disconnected", "message": "未连接消息总线（NATS），正在重连"})
        else:
            try:
                async with asyncio.timeout(2.0):
                    await self.nc.jetstream().account_info()
            except Exception as err:
                log.warning("jetstream not ready", extra={"error": repr(err)})
                reasons.append({"code": "jetstream_unavailable", "message": "消息总线的 JetStream 暂不可用"})
        engine = getattr(self, "engine", None)
        if engine is not None:
            try:
                async with asyncio.timeout(2.0), engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            except Exception as err:
                log.warning("database not ready", extra={"error": repr(err)})
                reasons.append({"code": "database_unavailable", "message": "读模型数据库暂不可用"})
        return reasons

    def watched(self) -> Watched:
        """What ``/metrics`` and ``/status`` read from the server for this process."""
        checkpoints = {
            w.durable: (lambda w=w: read_position(w.engine, w.projection.name))
            for w in self.workers
            if isinstance(w, Projector)
        }
        return Watched(
            consumers=[(w.stream, w.durable) for w in self.workers],
            streams=list(dict.fromkeys([*self.streams, *(w.stream for w in self.workers)])),
            deadletter_stream=subjects.deadletter_stream(self.here),
            deadletter_subjects={
                w.durable: subjects.deadletter_subject(self.here, self.context, w.durable) for w in self.workers
            },
            checkpoints=checkpoints,
            mirrors=list(self.mirrors),
        )

    async def stop(self) -> None:
        for loop in self._loops:
            with contextlib.suppress(Exception):
                await cancel_and_wait(loop)
        self._loops.clear()
        if self._replays is not None:
            with contextlib.suppress(Exception):
                await self._replays.stop()
            self._replays = None
        for worker in self.workers:
            worker.stop()
        # Let each worker finish (and acknowledge) the batch in hand: a cancelled one would be
        # redelivered only after its ack wait.
        running = [t for t in self._tasks if not t.done()]
        if running:
            await asyncio.wait(running, timeout=30)
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks.clear()
        for worker in self.workers:
            with contextlib.suppress(Exception):
                await worker.close()
        self.workers.clear()
        if self.nc is not None:
            await self.nc.close()
        engine = getattr(self, "engine", None)
        if engine is not None:
            await engine.dispose()


async def start_when_available(service: ServiceBase, *, max_wait_s: float = 10.0) -> None:
    """``service.start()``, tried again while NATS is not there yet or JetStream is still
    recovering (a service started beside, or restarted while, a nats-server that is restarting),
    waiting up to ``max_wait_s`` between tries; any other failure ends the process as before."""
    delay = 0.5
    while True:
        try:
            await service.start()
            return
        except Exception as err:
            if not (unavailable(err) or isinstance(err, OSError)):
                raise
            log.warning("nats not available at start, retrying", extra={"error": repr(err), "retry_in_s": delay})
        with contextlib.suppress(Exception):
            await service.stop()  # what the failed start had opened
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_wait_s)


def operated(api: FastAPI, service: ServiceBase) -> FastAPI:
    """Add what operators and load balancers poll to a service's app: ``/readyz``, ``/metrics``
    and ``/status`` (its spans are FastAPI's own, ``http.HTTP_TELEMETRY``), and answer 503 at
    once while NATS is away."""
    api.include_router(readiness_router(service.readiness))
    api.include_router(
        metrics_router(
            lambda: service.nc.jetstream() if service.nc is not None else None,
            lambda: service.watched() if service.nc is not None else None,
        )
    )
    api.add_middleware(UnavailableWhileDisconnected, connected=service.connected)
    engine = getattr(service, "engine", None)
    if engine is not None:
        # a token of a person the directory has disabled is refused from now on
        verifier_for(service.settings).disabled = DisabledPeople(engine).contains
    return api


async def serve_service(
    service: ServiceBase,
    create_api: Callable[..., FastAPI],
    *,
    host: str,
    port: int,
    commands: Register | None = None,
) -> None:
    """What every service's ``serve`` does: run ``service`` with the HTTP app
    ``create_api(settings, handlers=..., engine=...)`` builds and, for a service that has one, its
    NATS command subject (``commands``, the service's ``register_command_subscriber``)."""
    also = []
    if commands is not None:
        broker = command_broker(service.settings, service.context, commands, lambda: service.handlers)
        also.append((broker.start, broker.stop))
    await serve(
        service,
        lambda: create_api(service.settings, handlers=lambda: service.handlers, engine=service.engine),
        host=host,
        port=port,
        also=also,
    )


async def serve(
    service: ServiceBase,
    build_api: Callable[[], FastAPI],
    *,
    host: str,
    port: int,
    also: Sequence[tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]] = (),
) -> None:
    """Run ``service`` and its HTTP app until SIGINT/SIGTERM. ``also`` are (start, stop) pairs of
    other parts (a FastStream broker for a NATS command subject), started after the service and
    stopped before it. Finished spans go to ``<data dir>/traces`` for ``duban trace`` (and over
    OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set). With ``DUBAN_HTTP_WORKERS`` above 1, this
    process starts helpers that answer HTTP on the same port (``http/workers.py``)."""
    settings = service.settings
    worker = settings.http_worker
    trace_dir = settings.data_dir / "traces" if settings.trace_files else None
    setup_tracing(service.context, settings.jurisdiction, trace_dir=trace_dir, worker=worker)
    await start_when_available(service)
    started = []
    helpers: Helpers | None = None
    try:
        if service.background:
            for start, stop in also:
                await start()
                started.append(stop)
        api = operated(build_api(), service)
        # Keep-alive well above clients' (5 s in httpx): a request sent on a connection the server
        # is closing gets a reset, and a ballot terminal could not tell whether it was taken.
        config = uvicorn.Config(api, host=host, port=port, log_config=None, access_log=False, timeout_keep_alive=75)
        server = uvicorn.Server(config)
        sockets = [listening_socket(host, port)] if settings.http_workers > 1 else None
        if sockets and worker == 0:
            helpers = Helpers(helper_command(), settings.http_workers)
            await helpers.start()
        elif worker:
            service.run_task(lambda: exit_with_parent(server), "exit-with-parent", helper=True)
            service.run_task(lambda: report_ready(server), "report-ready", helper=True)
        # What start-up built (modules, apps, connections) lives as long as the process: moved out
        # of the collector's reach, a full collection no longer walks it (up to ~100 ms each
        # under a burst of requests, a pause every request in flight waits out).
        # Requests keep a few thousand objects alive while they wait on NATS: collecting young
        # objects every 700 allocations walks them again and again (a third of the collector's
        # time in a ballot burst), every 10,000 walks them once.
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)
        log.info(
            "serving",
            extra={
                "service": service.context,
                "jurisdiction": service.here,
                "url": f"http://{host}:{port}",
                "http_worker": worker,
                "http_workers": settings.http_workers,
            },
        )
        await server.serve(sockets=sockets)
    finally:
        if helpers is not None:
            await helpers.stop()
        for stop in reversed(started):
            await stop()
        await service.stop()
