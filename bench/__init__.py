"""Throughput benchmarks of duban's runtime against raw nats-py, on one embedded nats-server.

``python -m bench`` (or ``make bench``) starts one fresh nats-server in a temporary directory,
with JetStream on disk and ``sync_interval: always`` as every duban configuration sets, runs
every measurement on it in turn, prints progress to stderr, and prints one JSON object as the
last line of stdout. The figures (all per second, wall clock, this process and the server
sharing the machine):

- ``raw_publish_per_s``: nats-py JetStream publishes with acknowledgements, pipelined, on a
  stream of its own; the ceiling any append can reach through nats-py on this machine.
- ``raw_consume_per_s``: a durable pull consumer fetching batches and acking every message
  over those messages; the ceiling of any projector.
- ``append_per_s``: ``EventStore.append`` with its concurrency check (expected version), one
  event per commit, many aggregates appended to in parallel, snapshots included.
- ``load_per_s``: cold ``EventStore.load`` of random aggregates of a large stream.
- ``project_per_s``: a ``Projector`` over that stream into SQLite, from ``prepare()`` until it
  has caught up.

``append_vs_raw`` and ``project_vs_raw`` relate the runtime to the raw ceilings. Benchmarks are
scripts, never timed test assertions.
"""
