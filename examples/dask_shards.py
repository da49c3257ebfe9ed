"""Read a sharded streamkit dataset in parallel with Dask: one task per Flight endpoint.

    python examples/dask_shards.py grpc://gateway:8815 TENANT/DATASET

Each task connects to the gateway on its own and redeems one endpoint's ticket (tickets are
signed and self-describing, so with several gateways any of them serves it). The parts come
back as Arrow tables; keep them as they are, or hand them on (``dask.dataframe``,
``pyarrow.concat_tables``) as the job needs.
"""

from __future__ import annotations

import os
import sys

import dask
import pyarrow as pa
import pyarrow.flight as flight


def _options(token: str | None) -> flight.FlightCallOptions:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return flight.FlightCallOptions(headers=headers)


def read_endpoint(url: str, ticket: bytes, token: str | None = None) -> pa.Table:
    with flight.connect(url) as client:
        return client.do_get(flight.Ticket(ticket), _options(token)).read_all()


def read_parallel(url: str, tenant: str, dataset: str, token: str | None = None) -> list[pa.Table]:
    """Every endpoint of ``tenant/dataset``, read by Dask tasks in separate processes."""
    with flight.connect(url) as client:
        info = client.get_flight_info(
            flight.FlightDescriptor.for_path(tenant, dataset),
            _options(token),
        )
    tasks = [dask.delayed(read_endpoint)(url, e.ticket.ticket, token) for e in info.endpoints]
    return list(dask.compute(*tasks, scheduler="processes"))


if __name__ == "__main__":
    gateway, target = sys.argv[1], sys.argv[2]
    tenant, dataset = target.split("/", 1)
    parts = read_parallel(gateway, tenant, dataset, os.environ.get("STREAMKIT_TOKEN"))
    for i, part in enumerate(parts):
        print(f"endpoint {i}: {part.num_rows} rows", file=sys.stderr)
    print(sum(p.num_rows for p in parts))
