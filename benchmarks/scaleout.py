"""Aggregate read throughput through nginx (deploy/nginx.conf) with 1, 2 and 3 gateways.

One connector process over a generated Arrow file (in a temporary folder), three gateway
processes sharing a ticket_key, and an nginx per gateway count started from the shipped
deploy/nginx.conf with the first 1, 2 or 3 gateways as its upstream (tests/test_nginx.py
renders it). For each setup, --clients client processes read the whole dataset again and
again for --seconds (GetFlightInfo, then DoGet); the Arrow bytes they all received in that
window are the throughput. Setups take turns for --rounds rounds; each one's median round is
reported, as MB/s and as ratios to nginx with one gateway and to reading the connector
directly, with the CPU seconds each kind of process used in it (which says what limits it:
the machine's cores, shared by servers and clients alike).

    .venv/bin/python benchmarks/scaleout.py [--size-mb 200] [--clients 6] [--seconds 10]
    .venv/bin/python benchmarks/scaleout.py --flight "grpc_buffer_size 8k"  # try a directive
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pyarrow.flight as flight

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import Process  # noqa: E402
from gateway_load import write_big  # noqa: E402
from test_nginx import NGINX_CONF, Nginx  # noqa: E402

GATEWAYS = 3
ENV = {"STREAMKIT_TICKET_KEY": "scaleout-benchmark-ticket-key-0123"}
VIA_GATEWAY = json.dumps({"tenant": "bench", "dataset": "big"})



def with_directives(text: str, directives: list[str]) -> str:
    """The file with each directive in place of its own, or added to the Flight server."""
    for directive in directives:
        name = directive.split()[0]
        text, found = re.subn(rf"^(\s*){name} [^;]*;", rf"\g<1>{directive};", text, flags=re.M)
        if not found:
            text, found = re.subn(r"listen 8815 http2;", rf"\g<0> {directive};", text)
            assert found == 1, "deploy/nginx.conf: no 'listen 8815 http2;'"
    return text


def client_main(url: str, descriptor: str, start: float, seconds: float) -> None:
    """One client process: read until ``start + seconds`` (wall clock, shared by all), then
    print the bytes received in the window, the reads completed and the CPU seconds used."""
    query = flight.FlightDescriptor.for_command(descriptor)
    received = reads = 0
    with flight.connect(url) as client:
        client.get_flight_info(query)  # connected before the window opens
        time.sleep(max(0.0, start - time.time()))
        end, cpu = start + seconds, time.process_time()
        while time.time() < end:
            reader = client.do_get(client.get_flight_info(query).endpoints[0].ticket)
            try:
                while time.time() < end:
                    received += reader.read_chunk().data.nbytes
                reader.cancel()
            except StopIteration:
                reads += 1
    print(json.dumps({"bytes": received, "reads": reads, "cpu": time.process_time() - cpu}))


@dataclass
class Setup:
    name: str
    url: str
    descriptor: str
    servers: dict[str, list[psutil.Process]] = field(default_factory=dict)
    """The server processes it goes through, by kind, for their CPU time."""


@contextmanager
def deployment(workdir: Path, megabytes: int, directives: list[str]) -> Iterator[list[Setup]]:
    """Connector, gateways and nginxes started; the setups to measure, connector first."""
    data = workdir / "data"
    data.mkdir()
    rows = write_big(data / "big.arrow", megabytes)
    size = (data / "big.arrow").stat().st_size
    print(f"dataset: {rows:,} rows, {size / 1e6:.0f} MB", file=sys.stderr)
    source = NGINX_CONF
    if directives:
        source = workdir / "nginx.conf"
        source.write_text(with_directives(NGINX_CONF.read_text(), directives))
    procs: list[Process] = []
    nginxes: list[Nginx] = []
    try:
        connector = Process("connector", "serve", str(data), "--port", "0")
        procs.append(connector)
        port = connector.wait_for_stderr(r"connector serving .* at grpc://\S+:(\d+)", 60)[1]
        config = workdir / "streamkit.toml"
        config.write_text(
            '[gateway]\nticket_key = "env:STREAMKIT_TICKET_KEY"\n\n'
            f'[tenants.bench]\nconnector = "grpc://127.0.0.1:{port}"\n'
        )
        flight_ports, http_ports = [], []
        for _ in range(GATEWAYS):
            args = ("--config", str(config), "--flight-port", "0", "--http-port", "0")
            procs.append(Process("gateway", "up", *args, env=ENV))
            flight_ports.append(procs[-1].wait_for_stderr(r"flight +grpc://\S+:(\d+)", 60)[1])
            http_ports.append(procs[-1].wait_for_stderr(r"dashboard +http://\S+:(\d+)/", 60)[1])
        for n in range(1, GATEWAYS + 1):
            nginxes.append(
                Nginx(
                    workdir / f"nginx-{n}",
                    [f"127.0.0.1:{p}" for p in flight_ports[:n]],
                    [f"127.0.0.1:{p}" for p in http_ports[:n]],
                    source=source,
                )
            )
        connector_ps = [psutil.Process(connector.proc.pid)]
        gateway_ps = [psutil.Process(p.proc.pid) for p in procs[1:]]
        found = [
            Setup("connector", f"grpc://127.0.0.1:{port}", '{"dataset": "big"}'),
            Setup("gateway (no nginx)", f"grpc://127.0.0.1:{flight_ports[0]}", VIA_GATEWAY),
        ]
        found[0].servers = {"connector": connector_ps}
        found[1].servers = {"connector": connector_ps, "gateways": gateway_ps}
        for n, nginx in enumerate(nginxes, 1):
            master = psutil.Process(nginx.proc.pid)
            setup = Setup(f"nginx + {n} gateway" + "s" * (n > 1), nginx.flight_url, VIA_GATEWAY)
            setup.servers = {
                "connector": connector_ps,
                "gateways": gateway_ps,
                "nginx": [master, *master.children()],
            }
            found.append(setup)
        yield found
    finally:
        for nginx in nginxes:
            nginx.stop()
        for proc in reversed(procs):
            proc.stop()


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def measure(setup: Setup, clients: int, seconds: float) -> dict[str, object]:
    start = time.time() + 3.0  # for every client process to start and connect
    before = {kind: cpu_seconds(ps) for kind, ps in setup.servers.items()}
    command = [sys.executable, __file__, "--client", setup.url, setup.descriptor]
    procs = [
        subprocess.Popen([*command, str(start), str(seconds)], stdout=subprocess.PIPE, text=True)
        for _ in range(clients)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 120)
        if proc.returncode != 0:
            raise SystemExit(f"a client of {setup.name} failed")
        results.append(json.loads(out))
    cpu = Counter({kind: cpu_seconds(ps) - before[kind] for kind, ps in setup.servers.items()})
    cpu["clients"] = sum(r["cpu"] for r in results)
    received = sum(r["bytes"] for r in results)
    return {
        "setup": setup.name,
        "mb_per_s": received / seconds / 1e6,
        # What a CPU second of the whole path moves: steadier than MB/s on a shared machine.
        "mb_per_cpu_s": received / sum(cpu.values()) / 1e6,
        "reads": sum(r["reads"] for r in results),
        "cpu_seconds": {kind: round(value, 1) for kind, value in cpu.items()},
    }


def main() -> None:
    if sys.argv[1:2] == ["--client"]:
        url, descriptor, start, seconds = sys.argv[2:6]
        client_main(url, descriptor, float(start), float(seconds))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200, help="dataset size")
    parser.add_argument("--clients", type=int, default=6, help="client processes at once")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every setup")
    parser.add_argument(
        "--flight",
        action="append",
        default=[],
        metavar="DIRECTIVE",
        help="an nginx directive instead of the file's, or added to its Flight server",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    print(f"{args.clients} client processes, {args.seconds:g} s a setup, {os.cpu_count()} CPUs",
          file=sys.stderr)  # fmt: skip
    runs: dict[str, list[dict[str, object]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="streamkit-scaleout-") as tmp,
        deployment(Path(tmp), args.size_mb, args.flight) as found,
    ):
        for round_ in range(1, args.rounds + 1):  # interleaved: a busy moment hits them all
            for setup in found:
                runs.setdefault(setup.name, []).append(measure(setup, args.clients, args.seconds))
                mbps = runs[setup.name][-1]["mb_per_s"]
                print(f"  round {round_}, {setup.name}: {mbps:.0f} MB/s", file=sys.stderr)
    # Each setup's median round.
    results = [sorted(r, key=lambda x: float(x["mb_per_s"]))[len(r) // 2] for r in runs.values()]
    direct, one = (float(results[i]["mb_per_s"]) for i in (0, 2))
    for result in results:
        result["vs_nginx_1"] = round(float(result["mb_per_s"]) / one, 2)
        result["vs_connector"] = round(float(result["mb_per_s"]) / direct, 2)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{'setup':<21}{'MB/s':>7}{'reads':>7}{'÷ nginx+1':>11}{'÷ connector':>13}"
        f"{'MB/CPU-s':>10}  CPU seconds"
    )
    for r in results:
        cpu = ", ".join(f"{kind} {value}" for kind, value in r["cpu_seconds"].items())
        print(
            f"{r['setup']:<21}{r['mb_per_s']:>7.0f}{r['reads']:>7}"
            f"{r['vs_nginx_1']:>11.2f}{r['vs_connector']:>13.2f}{r['mb_per_cpu_s']:>10.0f}  {cpu}"
        )


if __name__ == "__main__":
    main()
