"""deploy/'s files as an operator gets them: current with topology.toml, a compose file that is
valid Compose, NATS configurations nats-server accepts, every secret they name provided by
``generate.py secrets``, and the PostgreSQL set-up of compose working with a service.

No Docker engine runs here: the compose file is validated against the Compose specification's
JSON Schema as check-jsonschema ships it (``vendor.compose-spec``), and what compose would wire
(users, URLs, variables, mounts) is checked against the NATS configurations. The NATS
configurations themselves run in tests/test_deploy_nats.py.
"""

from __future__ import annotations

import asyncio
import re
import subprocess

import asyncpg
import jsonschema
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema
from sqlalchemy.engine import make_url

from contracts.intake import Channel, MatterData, MatterKind, SubmitMatter, Submitter
from services.intake import projections
from services.intake.app import IntakeService
from services.runtime.bus.levels import service_permissions
from services.runtime.http.auth import Principal, Role
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats, nats_server_binary
from tests.support.deploy import DEPLOY, generate

COMPOSE = DEPLOY / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_generated_files_are_current_with_the_topology():
    for path, text in generate.files().items():
        assert (DEPLOY / path).read_text() == text, f"deploy/{path} is stale: run python deploy/generate.py"


def test_the_compose_file_is_valid_compose(compose):
    schema = get_builtin_schema("vendor.compose-spec")
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_check_catches_a_broken_compose_file(compose):
    """The validation above can fail: a misspelt key is refused."""
    schema = get_builtin_schema("vendor.compose-spec")
    broken = {**compose, "services": {**compose["services"], "jaeger": {**compose["services"]["jaeger"], "port": 1}}}
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))


def test_compose_wires_what_exists(compose):
    services, volumes = compose["services"], set(compose["volumes"])
    topology = generate.Topology.load()
    for name, service in services.items():
        for other in service.get("depends_on", {}):
            assert other in services, (name, other)
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("./tls"):  # made on the site by `python deploy/generate.py tls`, never committed
                made = generate.tls_files(topology)
                assert source == "./tls" or source.removeprefix("./tls/") in made, (name, source)
            elif source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
            else:
                assert source in volumes, (name, source)
        if "build" in service:
            assert (DEPLOY / ".." / service["build"]["dockerfile"]).exists()
    # every service of every level, with a PostgreSQL of its own
    for code in topology.levels:
        for service in generate.SERVICES:
            assert f"{service}-{code}" in services and f"pg-{service}-{code}" in services
    host_ports = [port.split(":")[0] for service in services.values() for port in service.get("ports", [])]
    assert len(host_ports) == len(set(host_ports))


def test_every_variable_named_is_a_generated_secret(compose):
    secrets = set(generate.secrets())
    provided = {*generate.PROVIDED, *(generate.web_url_var(code) for code in generate.Topology.load().levels)}
    named = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text())) - provided
    assert named and named <= secrets
    for path in (DEPLOY / "nats").glob("*.conf"):
        variables = set(re.findall(r":\s*\$([A-Z0-9_]+)", path.read_text()))
        assert variables <= secrets, path.name
    # each NATS container gets every variable its configuration names
    for name, service in compose["services"].items():
        if service["image"].startswith("nats:"):
            conf = service["command"][-1].rsplit("/", 1)[-1]
            text = (DEPLOY / "nats" / conf).read_text()
            if "include" in text:
                text += (DEPLOY / "nats" / "hub-accounts.conf").read_text()
            assert set(re.findall(r":\s*\$([A-Z0-9_]+)", text)) <= set(service["environment"]), name


def test_each_service_logs_into_its_own_server_as_its_own_user(compose):
    topology = generate.Topology.load()
    for code in topology.levels:
        for service in generate.SERVICES:
            env = compose["services"][f"{service}-{code}"]["environment"]
            url = re.fullmatch(r"tls://([a-z]+-\d+):\$\{(\w+):\?[^}]*\}@([\w-]+):4222", env["DUBAN_NATS_URL"])
            assert url, env["DUBAN_NATS_URL"]
            user, variable, host = url.groups()
            assert user == f"{service}-{code}" and variable == generate.password_var(user)
            county = topology.county_of(code)
            conf = f"leaf-{county.code}.conf" if county else "hub-accounts.conf"
            assert host == (county.host if county else topology.hub_nodes[0])
            text = (DEPLOY / "nats" / conf).read_text()
            assert f'user: "{user}"' in text and f"password: ${variable}" in text
            assert env["DUBAN_JETSTREAM_DOMAIN"] == topology.domain_of(code)
            assert env["DUBAN_STREAM_REPLICAS"] == ("3" if code == topology.hub else "1")
            # and the permissions written for it are the runtime's
            for subject in service_permissions(code, service)["publish"]["allow"][:3]:
                assert f'"{subject}"' in text


def test_nats_server_accepts_every_configuration(tmp_path):
    """Each file as compose mounts it: the certificates `generate.py tls` makes where it looks."""
    env = generate.secrets()
    generate.write_tls(tmp_path / "tls")
    for path in sorted((DEPLOY / "nats").glob("*.conf")):
        (tmp_path / path.name).write_text(path.read_text().replace(generate.TLS_DIR, str(tmp_path / "tls")))
    for path in sorted(tmp_path.glob("*.conf")):
        if path.name == "hub-accounts.conf":
            continue
        checked = subprocess.run(
            [nats_server_binary(), "-t", "-c", str(path)], env=env, capture_output=True, text=True, cwd=tmp_path
        )
        assert checked.returncode == 0, (path.name, checked.stdout, checked.stderr)


@pytest.mark.postgres
def test_a_service_runs_on_the_postgresql_compose_sets_up_for_it(compose, postgres_server, tmp_path):
    """pg-intake-331081 as the postgres image creates it (POSTGRES_DB/USER/PASSWORD), and intake
    of 331081 with compose's DUBAN_DATABASE_URL, host and port pointed at a local server."""
    base, reason = postgres_server
    if base is None:
        pytest.skip(f"no PostgreSQL: {reason}")
    secrets = generate.secrets()
    pg_env = compose["services"]["pg-intake-331081"]["environment"]
    service_env = compose["services"]["intake-331081"]["environment"]

    def resolve(value: str) -> str:
        return re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: secrets[m.group(1)], value)

    user, database, password = pg_env["POSTGRES_USER"], pg_env["POSTGRES_DB"], resolve(pg_env["POSTGRES_PASSWORD"])
    server = make_url(base)
    name = f"{database}_{tmp_path.name[-8:]}".lower().replace("-", "_")
    role = f"{user}_{tmp_path.name[-8:]}".lower().replace("-", "_")

    async def create() -> None:  # what the postgres image's entrypoint does with those variables
        conn = await asyncpg.connect(server.set(drivername="postgresql").render_as_string(hide_password=False))
        try:
            await conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
            await conn.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
        finally:
            await conn.close()

    url = make_url(resolve(service_env["DUBAN_DATABASE_URL"]))
    assert url.drivername == "postgresql+asyncpg" and url.username == user and url.database == database
    assert url.host == "pg-intake-331081" and url.password == password
    local = url.set(host=server.host, port=server.port, username=role, database=name)

    async def scenario() -> list[dict]:
        await create()
        nats_server = EmbeddedNats(tmp_path / "nats").start()
        service = IntakeService(
            Settings(
                jurisdiction="331081",
                nats_url=nats_server.url,
                database_url=local.render_as_string(hide_password=False),
                data_dir=tmp_path,
            )
        )
        try:
            await service.start()
            station = Principal(sub="s", name="站", roles=[Role.liaison_station], jurisdiction="331081")
            data = MatterData(
                kind=MatterKind.problem,
                title="企业用工难",
                content="企业反映招工难。",
                lead=Submitter(id="d1", name="王代表"),
                channel=Channel.liaison_station,
                raised_in="331081",
            )
            await service.handlers.submit(SubmitMatter(matter=data), station)
            await service.wait_idle()
            return await projections.list_matters(service.engine, jurisdiction="331081")
        finally:
            await service.stop()
            nats_server.stop()

    rows = asyncio.run(scenario())
    assert [row["title"] for row in rows] == ["企业用工难"]


def test_no_nats_monitoring_port_is_published(compose):
    for name, service in compose["services"].items():
        if str(service.get("image", "")).startswith("nats"):
            published = [port.split(":")[-1] for port in service.get("ports", [])]
            assert str(generate.MONITOR_PORT) not in published, name
