"""Reloading ``streamkit.toml`` while streams run: the other tenants' streams go on, a
removed tenant's end with the reason, a bad file changes nothing; SIGHUP and
``streamkit gateway reload`` on a real process."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import REPO, running_connector, wait_for
from test_metrics import samples, value

from streamkit.config import ConfigError, load
from streamkit.gateway import make_gateway

ROWS = 200_000
READER_TOKEN, OTHER_TOKEN = "reader-5be1", "other-0c42"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    table = pa.table({"id": pa.array(range(ROWS), pa.int64()), "v": pa.array([1.5] * ROWS)})
    pq.write_table(table, root / "big.parquet", row_group_size=10_000)
    return root


def write_config(path: Path, tenants: dict[str, str], extra: str = "") -> None:
    """``tenants``: name -> the body of its table (e.g. ``path = "data"``)."""
    lines = ["[gateway]", "flight_port = 0", "http_port = 0", extra]
    for name, body in tenants.items():
        lines += [f"[tenants.{name}]", body]
    path.write_text("\n".join(lines) + "\n")


def ticket(tenant: str, dataset: str = "big", **more: object) -> flight.Ticket:
    return flight.Ticket(json.dumps({"tenant": tenant, "dataset": dataset, **more}).encode())


def bearer(token: str) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


def rest_of(reader: flight.FlightStreamReader) -> int:
    rows = 0
    for chunk in reader:
        rows += chunk.data.num_rows
    return rows


def test_reload_under_running_streams(tmp_path: Path, data: Path):
    config = tmp_path / "streamkit.toml"
    with running_connector(data) as connector:
        remote = f'connector = "grpc://127.0.0.1:{connector.port}"'
        write_config(config, {"a": f'path = "{data}"', "b": remote})
        gateway = make_gateway(load(config))
        gateway.loader = lambda: load(config)
        try:
            with flight.connect(gateway.flight_url) as client:
                kept = client.do_get(ticket("a"))
                publish(client, "b", [1])
                dropped = client.do_get(ticket("b", "feed", follow=True))  # never ends
                first_kept = kept.read_chunk().data.num_rows
                assert dropped.read_chunk().data.to_pydict() == {"x": [1]}
                write_config(config, {"a": f'path = "{data}"', "c": f'path = "{data}"'})
                change = gateway.reload()
                assert (change.added, change.removed) == (["c"], ["b"])
                assert change.reconnected == change.needs_restart == []
                # The kept tenant's stream runs to its end, every row delivered.
                assert first_kept + rest_of(kept) == ROWS
                with pytest.raises(flight.FlightUnavailableError, match="'b' was removed"):
                    dropped.read_chunk()
                assert client.do_get(ticket("c")).read_all().num_rows == ROWS
                with pytest.raises(flight.FlightError, match="not found: tenant 'b'"):
                    client.do_get(ticket("b")).read_all()
                listed = {info.descriptor.path[0] for info in client.list_flights()}
                assert listed == {b"a", b"c"}
                assert value(samples(gateway.metrics.render().decode()),
                             "streamkit_live_followers", tenant="b") == 0
                [result] = client.do_action(flight.Action("metrics", b""))
            found = samples(result.body.to_pybytes().decode())
            assert not any(("tenant", "b") in labels for _, labels in found)
            assert value(found, "streamkit_config_reloads_total", outcome="ok") == 1
            assert value(found, "streamkit_requests_total", tenant="a", surface="flight",
                         outcome="ok") == 1
        finally:
            gateway.stop()


BROKEN_FILES = [  # (file, the reason after "FILE: ")
    ("[tenants.a]\npath = 'nowhere'\n", "tenants.a.path: 'nowhere' is not a folder"),
    ("[tenants.a]\nbogus = 1\npath = '.'\n", "tenants.a.bogus: unknown key"),
    ("[gateway\n", "not valid TOML"),
    ("[tenants.a]\nconnector = 'grpc://127.0.0.1:508151'\n", "tenants.a.connector: expected"),
    ("[tenants.a]\npath = 'a\\u0000b'\n", "tenants.a.path: .* is not a folder"),
    (f"[tenants.a]\npath = '{'x' * 300}'\n", "tenants.a.path: .* is not a folder"),  # too long
    ("[gateway]\nidle_timeout = nan\n[tenants.a]\npath = '.'\n", "gateway.idle_timeout: must"),
    ("[gateway]\nidle_timeout = inf\n[tenants.a]\npath = '.'\n", "gateway.idle_timeout: must"),
    ('[tenants."a\\n"]\npath = "."\n', "tenants.a\n: tenant names use"),
    ("x = " + "[" * 100_000 + "]" * 100_000 + "\n", "not valid TOML"),
    ("[tenants.a]\npath = '.'\ntokens = ['file:secret.bin']\n", r"tenants.a.tokens\[0\]: .*UTF-8"),
]


def test_a_bad_file_is_refused_and_the_running_config_kept(tmp_path: Path, data: Path):
    config = tmp_path / "streamkit.toml"
    (tmp_path / "secret.bin").write_bytes(b"\xff\xfe token")
    write_config(config, {"a": f'path = "{data}"'})
    gateway = make_gateway(load(config))
    gateway.loader = lambda: load(config)
    try:
        with flight.connect(gateway.flight_url) as client:
            reader = client.do_get(ticket("a"))
            first = reader.read_chunk().data.num_rows
            for broken, reason in BROKEN_FILES:
                config.write_text(broken)
                with pytest.raises(ConfigError, match=re.escape(f"{config}: ") + reason):
                    gateway.reload()
                with pytest.raises(flight.FlightServerError, match="running configuration is kept"):
                    list(client.do_action(flight.Action("reload", b"")))
            config.unlink()
            config.mkdir()  # a folder where the file was
            with pytest.raises(ConfigError, match=re.escape(f"{config}: cannot read it")):
                gateway.reload()
            config.rmdir()
            gateway.loader = lambda: 1 / 0  # whatever fails, the gateway runs on
            with pytest.raises(ConfigError, match="division by zero"):
                gateway.reload()
            assert first + rest_of(reader) == ROWS
            assert client.do_get(ticket("a")).read_all().num_rows == ROWS
            [result] = client.do_action(flight.Action("metrics", b""))
        found = samples(result.body.to_pybytes().decode())
        refused = 2 * len(BROKEN_FILES) + 2
        assert value(found, "streamkit_config_reloads_total", outcome="invalid") == refused
    finally:
        gateway.stop()


def test_a_revoked_token_ends_its_streams_and_a_changed_connector_reconnects(
    tmp_path: Path, data: Path
):
    config = tmp_path / "streamkit.toml"
    for folder in ("b", "other"):
        (tmp_path / folder).mkdir()
    two = f'path = "{data}"\ntokens = ["{READER_TOKEN}", "{OTHER_TOKEN}"]'
    write_config(config, {"a": two, "b": f'path = "{tmp_path / "b"}"'})
    gateway = make_gateway(load(config))
    gateway.loader = lambda: load(config)
    try:
        with flight.connect(gateway.flight_url) as client:
            publish(client, "a", [1], bearer(READER_TOKEN))
            publish(client, "b", [1])
            keeps = client.do_get(ticket("a", "feed", follow=True), bearer(READER_TOKEN))
            revoked = client.do_get(ticket("a", "feed", follow=True), bearer(OTHER_TOKEN))
            moved = client.do_get(ticket("b", "feed", follow=True))
            for reader in (keeps, revoked, moved):
                assert reader.read_chunk().data.to_pydict() == {"x": [1]}
            one = f'path = "{data}"\ntokens = ["{READER_TOKEN}"]'
            write_config(config, {"a": one, "b": f'path = "{tmp_path / "other"}"'})
            change = gateway.reload()
            assert (change.access_changed, change.reconnected) == (["a"], ["b"])
            with pytest.raises(flight.FlightUnauthorizedError, match="may no longer read"):
                revoked.read_chunk()
            with pytest.raises(flight.FlightUnavailableError, match="'b' changed"):
                moved.read_chunk()
            publish(client, "a", [2], bearer(READER_TOKEN))
            assert keeps.read_chunk().data.to_pydict() == {"x": [2]}
            with pytest.raises(flight.FlightUnauthenticatedError):
                client.do_get(ticket("a"), bearer(OTHER_TOKEN)).read_all()
            assert list(client.list_flights(b"b")) == []  # the new folder is empty
    finally:
        gateway.stop()


def publish(
    client: flight.FlightClient,
    tenant: str,
    values: list[int],
    options: flight.FlightCallOptions | None = None,
) -> None:
    writer, _ = client.do_put(
        flight.FlightDescriptor.for_path(tenant, "feed"), pa.schema([("x", pa.int64())]), options
    )
    writer.write_batch(pa.record_batch({"x": values}))
    writer.close()


def test_many_readers_through_repeated_reloads(tmp_path: Path, data: Path):
    """100 readers of one tenant while another is added and removed 20 times: every read
    complete, and the readers of the tenant being removed fail cleanly, never a crash."""
    config = tmp_path / "streamkit.toml"
    base = {"a": f'path = "{data}"'}
    write_config(config, base)
    gateway = make_gateway(load(config))
    gateway.loader = lambda: load(config)
    totals: list[int] = []
    failures: list[BaseException] = []
    churn_failures: list[str] = []
    done = threading.Event()

    def reader() -> None:
        try:
            with flight.connect(gateway.flight_url) as client:
                for _ in range(2):
                    totals.append(client.do_get(ticket("a")).read_all().num_rows)
        except BaseException as exc:
            failures.append(exc)

    def churn_reader() -> None:
        with flight.connect(gateway.flight_url) as client:
            while not done.is_set():
                try:
                    client.do_get(ticket("x")).read_all()
                except flight.FlightError as exc:
                    churn_failures.append(str(exc).splitlines()[0])

    try:
        threads = [threading.Thread(target=reader) for _ in range(100)]
        churners = [threading.Thread(target=churn_reader) for _ in range(4)]
        for thread in threads + churners:
            thread.start()
        for i in range(20):
            tenants = {**base, "x": f'path = "{data}"'} if i % 2 == 0 else base
            write_config(config, tenants)
            gateway.reload()
        for thread in threads:
            thread.join(120)
        done.set()
        for thread in churners:
            thread.join(60)
        assert not failures
        assert totals == [ROWS] * 200
        allowed = ("not found: tenant 'x'", "'x' was removed from the configuration")
        assert all(any(a in f for a in allowed) for f in churn_failures), set(churn_failures)
        with flight.connect(gateway.flight_url) as client:
            assert client.do_get(ticket("a")).read_all().num_rows == ROWS
    finally:
        done.set()
        gateway.stop()


def _gateway_process(config: Path) -> tuple[subprocess.Popen[str], list[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamkit", "gateway", "up", "--config", str(config)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []

    def collect() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)

    threading.Thread(target=collect, daemon=True).start()
    found = wait_for(
        lambda: re.search(r"flight\s+(grpc://\S+)", "".join(lines)), 30, "the gateway's URL"
    )
    return proc, lines, found.group(1)


def test_sighup_and_gateway_reload_on_a_real_process(tmp_path: Path, data: Path):
    config = tmp_path / "streamkit.toml"
    write_config(config, {"a": f'path = "{data}"'})
    proc, lines, url = _gateway_process(config)
    try:
        with flight.connect(url) as client:
            publish(client, "a", [1])
            follow = client.do_get(ticket("a", "feed", follow=True))
            assert follow.read_chunk().data.to_pydict() == {"x": [1]}

            write_config(config, {"a": f'path = "{data}"', "c": f'path = "{data}"'})
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "reloaded" in "".join(lines), 20, "the reload's log line")
            assert client.do_get(ticket("c")).read_all().num_rows == ROWS

            config.write_text(config.read_text() + "[tenants.d]\nbogus = true\n")
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "reload refused" in "".join(lines), 20, "the refusal")
            assert f"{config}: tenants.d.bogus: unknown key" in "".join(lines)

            config.unlink()
            config.mkdir()  # what an editor or a deploy tool may leave for a moment
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: f"{config}: cannot read it" in "".join(lines), 20, "the refusal")
            config.rmdir()
            write_config(config, {"a": f'path = "{data}"', "e": 'connector = "grpc://h:508151"'})
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "tenants.e.connector: expected" in "".join(lines), 20, "the refusal")
            assert proc.poll() is None and "Traceback" not in "".join(lines)

            write_config(config, {"a": f'path = "{data}"'})
            done = subprocess.run(
                [sys.executable, "-m", "streamkit", "gateway", "reload", "--gateway", url],
                cwd=REPO, capture_output=True, text=True, timeout=60,
            )
            assert done.returncode == 0, done.stderr
            assert "removed: c" in done.stderr
            # The follow opened before all this still streams.
            publish(client, "a", [2])
            assert follow.read_chunk().data.to_pydict() == {"x": [2]}
            assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("remote", [False, True], ids=["embedded", "remote"])
def test_an_open_publish_of_a_removed_tenant_is_ended(tmp_path: Path, data: Path, remote: bool):
    (tmp_path / "b").mkdir()
    config = tmp_path / "streamkit.toml"
    with running_connector(tmp_path / "b") as connector:
        b = f'connector = "grpc://127.0.0.1:{connector.port}"' if remote else 'path = "b"'
        write_config(config, {"a": f'path = "{data}"', "b": b})
        gateway = make_gateway(load(config))
        gateway.loader = lambda: load(config)
        try:
            with flight.connect(gateway.flight_url) as client:
                schema = pa.schema([("x", pa.int64())])
                writer, _ = client.do_put(flight.FlightDescriptor.for_path("b", "feed"), schema)
                try:
                    writer.write_batch(pa.record_batch({"x": [1]}))
                    wait_for(lambda: gateway.forwarder.publishes, what="the publish")
                    write_config(config, {"a": f'path = "{data}"'})
                    assert gateway.reload().removed == ["b"]
                    with pytest.raises(flight.FlightUnavailableError, match="'b' was removed"):
                        writer.write_batch(pa.record_batch({"x": [2]}))
                        writer.done_writing()
                        writer.close()
                finally:
                    with contextlib.suppress(flight.FlightError):
                        writer.close()
                assert not gateway.forwarder.publishes
                assert client.do_get(ticket("a")).read_all().num_rows == ROWS
                [result] = client.do_action(flight.Action("metrics", b""))
            found = samples(result.body.to_pybytes().decode())
            assert value(found, "streamkit_requests_total", tenant="(unknown)", surface="flight",
                         outcome="unavailable") == 1  # fmt: skip
        finally:
            gateway.stop()
