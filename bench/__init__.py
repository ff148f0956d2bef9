"""Throughput benchmarks of duban's runtime against raw nats-py, on one embedded nats-server.

``python -m bench`` (or ``make bench``) starts one fresh nats-server in a temporary directory,
with JetStream on disk and ``sync_interval: always`` as every duban configuration sets, runs
every measurement on it in turn, prints progress to stderr, and prints one JSON object as the
last line of stdout. The figures (all per second, wall clock, this process and the server
sharing the machine):

- ``raw_publish_per_s``: nats-py JetStream publishes with acknowledgements, pipelined, of
  messages like the event store's commits (a real commit's body and headers, each with its own
  ``Nats-Msg-Id`` and true expected version) on a stream configured like an event stream: the
  ceiling any append can reach through nats-py on this machine.
- ``raw_consume_per_s``: nats-py pulling the event stream itself in batches, with the
  projector's consumer configuration (``AckPolicy.ALL``, one ack per batch), decoding nothing:
  the ceiling of any projector.
- ``raw_publish_plain_per_s``, ``raw_publish_async_plain_per_s``, ``raw_consume_plain_per_s``:
  the same on 500-byte messages without headers (what the ratios used to compare with), for
  reference.
- ``append_per_s``: ``EventStore.append`` with its concurrency check (expected version), one
  event per commit, many aggregates appended to in parallel, snapshots included.
- ``load_per_s``: cold ``EventStore.load`` of random aggregates of a large stream.
- ``project_per_s``: a ``Projector`` over that stream into SQLite, from ``prepare()`` until it
  has caught up.

``append_vs_raw`` and ``project_vs_raw`` relate the runtime to the raw ceilings on the same
messages (``…_vs_raw_plain`` to the plain ones). Benchmarks are scripts, never timed test
assertions.
"""
