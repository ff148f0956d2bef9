"""The benchmarks' served services take nothing of duban's settings from the shell that runs them."""

from __future__ import annotations

from pathlib import Path

from bench.served import BENCH_SECRET, environment


def test_a_served_service_does_not_inherit_the_shells_database_or_duban_settings(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://tests@db.example/duban")  # set for make test
    monkeypatch.setenv("DUBAN_DATABASE_URL", "postgresql://other@db.example/duban")
    monkeypatch.setenv("NATS_URL", "nats://elsewhere:4222")
    monkeypatch.setenv("DUBAN_JWT_SECRET", "the shell's")
    monkeypatch.setenv("PATH", "/usr/bin")

    env = environment("nats://127.0.0.1:4222", Path("/tmp/data"), 2, more={"DUBAN_JWKS_URL": "http://127.0.0.1:1/jwks"})

    assert "DATABASE_URL" not in env and "DUBAN_DATABASE_URL" not in env and "NATS_URL" not in env
    assert env["DUBAN_JWT_SECRET"] == BENCH_SECRET  # what the benchmark's clients sign with
    assert env["DUBAN_NATS_URL"] == "nats://127.0.0.1:4222"
    assert env["DUBAN_DATA_DIR"] == "/tmp/data"
    assert env["DUBAN_HTTP_WORKERS"] == "2"
    assert env["DUBAN_JWKS_URL"] == "http://127.0.0.1:1/jwks"
    assert env["PATH"] == "/usr/bin"  # the rest of the environment is kept
