"""Write the demo datasets in examples/data (deterministic: same seed, same files).

python examples/make_demo_data.py [OUT_DIR]
"""

from __future__ import annotations

import gzip
import json
import math
import random
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.parquet as pq

SENSOR_ROWS = 10_080  # one week at one reading a minute
SALES_ROWS = 2_000
REGIONS = ["north", "south", "east", "west"]
PRODUCTS = ["widget", "gadget", "sprocket", "gizmo", "doohickey"]
CUSTOMERS = [
    "Acme Corp",
    "Müller GmbH",
    "Société Générale",
    "Nakamura 株式会社",
    "Peña & Hijos",
    "Ørsted A/S",
    "O'Brien Ltd",
    "Zhang, Li & Co",
]


def sensors(rng: random.Random) -> pa.Table:
    start = datetime(2026, 1, 5, tzinfo=UTC)
    ts, temperature, humidity, pressure, vibration = [], [], [], [], []
    for i in range(SENSOR_ROWS):
        day = 2 * math.pi * i / 1440
        ts.append(start + timedelta(minutes=i))
        temperature.append(round(21 + 4 * math.sin(day) + rng.gauss(0, 0.3), 2))
        humidity.append(round(45 - 10 * math.sin(day + 0.8) + rng.gauss(0, 1), 2))
        pressure.append(round(1013 + 6 * math.sin(i / 3000) + rng.gauss(0, 0.2), 2))
        vibration.append(round(abs(rng.gauss(0.2, 0.05)) + (1.5 if i % 997 < 15 else 0), 3))
    return pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("ms", tz="UTC")),
            "sensor": pa.array(["line-1"] * SENSOR_ROWS),
            "temperature": temperature,
            "humidity": humidity,
            "pressure": pressure,
            "vibration": vibration,
        }
    )


def sales(rng: random.Random) -> pa.Table:
    start = datetime(2025, 1, 1).date()
    rows = []
    for i in range(SALES_ROWS):
        quantity = rng.randint(1, 40)
        price = Decimal(rng.randint(199, 9999)) / 100
        rows.append(
            {
                "order_id": 100_000 + i,
                "date": start + timedelta(days=i * 365 // SALES_ROWS),
                "region": rng.choice(REGIONS),
                "product": rng.choice(PRODUCTS),
                "customer": rng.choice(CUSTOMERS),
                "quantity": quantity,
                "unit_price": price,
                "amount": price * quantity,
            }
        )
    schema = pa.schema(
        [
            ("order_id", pa.int64()),
            ("date", pa.date32()),
            ("region", pa.string()),
            ("product", pa.string()),
            ("customer", pa.string()),
            ("quantity", pa.int64()),
            ("unit_price", pa.decimal128(10, 2)),
            ("amount", pa.decimal128(12, 2)),
        ]
    )
    return pa.Table.from_pylist(rows, schema)


def json_rows(table: pa.Table) -> list[dict]:
    return [
        {
            k: (
                v.isoformat()
                if hasattr(v, "isoformat")
                else float(v)
                if isinstance(v, Decimal)
                else v
            )
            for k, v in row.items()
        }
        for row in table.to_pylist()
    ]


def main(out: Path) -> None:
    rng = random.Random(42)
    sensor_table, sales_table = sensors(rng), sales(rng)
    out.mkdir(parents=True, exist_ok=True)

    # The main datasets at the top; the same data in other formats under formats/, where
    # files sharing a name keep their extensions (formats/sensors.csv, formats/sensors.jsonl).
    formats = out / "formats"
    formats.mkdir(parents=True, exist_ok=True)
    pq.write_table(sensor_table, out / "sensors.parquet", row_group_size=4096)
    pcsv.write_csv(sensor_table, formats / "sensors.csv")
    with open(formats / "sensors.jsonl", "w", encoding="utf-8") as f:
        for row in json_rows(sensor_table.slice(0, 2000)):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    pcsv.write_csv(sales_table, out / "sales.csv")
    feather.write_feather(sales_table, formats / "sales.arrow", compression="uncompressed")
    with open(formats / "sales.json", "w", encoding="utf-8") as f:
        json.dump(json_rows(sales_table.slice(0, 500)), f, ensure_ascii=False, indent=1)

    ds.write_dataset(
        sales_table,
        out / "sales_by_region",
        format="parquet",
        partitioning=["region"],
        partitioning_flavor="hive",
        existing_data_behavior="delete_matching",
        basename_template="part-{i}.parquet",
    )

    archive = out / "archive" / "2025"
    archive.mkdir(parents=True, exist_ok=True)
    pcsv.write_csv(
        sales_table.slice(0, 300), archive / "q1_sales.tsv", pcsv.WriteOptions(delimiter="\t")
    )
    buffer = pa.BufferOutputStream()
    pcsv.write_csv(sensor_table.slice(0, 1440), buffer)
    with gzip.GzipFile(archive / "sensors_day1.csv.gz", "wb", mtime=0) as f:
        f.write(buffer.getvalue().to_pybytes())
    print(f"demo data written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
