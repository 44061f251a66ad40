#!/usr/bin/env python3
"""Runs the attribution queries (holders.sql, attribute.sql) over tracenat's Parquet export
with DuckDB (embedded) or Spark SQL (local mode), the same SQL text on both.

  lake.py holders   --engine duckdb|spark --lake DIR --public IP[:PORT] --at NS [--tolerance NS] [--protocol N]
  lake.py attribute --engine duckdb|spark --lake DIR --requests CSV [--tolerance NS] [--protocol N]

Run it with the Python that has duckdb and pyspark: scripts/setup.sh installs both into
/opt/tracenat-lake (/opt/tracenat-lake/bin/python lake.py …); Spark needs a Java runtime.

`holders` prints one JSON object: the verdict and every candidate. `attribute` prints one
JSON object per request: its line, verdict and subscribers. The export's layout and
columns: docs/export.md. The SQL files name only the views, so the same text runs on Spark
or Trino over the same tree in object storage; only the views' set-up differs.
"""

import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TABLES = ("sessions", "blocks")


def sql(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return f.read()


def quoted(text):
    """A SQL string literal (for the statements DuckDB cannot take parameters in)."""
    return "'" + text.replace("'", "''") + "'"


def duckdb_session(lake):
    import duckdb

    con = duckdb.connect()
    # Spark's name for a distinct list, so one SQL text serves both engines.
    con.execute("CREATE MACRO collect_set(x) AS list_distinct(list(x))")
    for table in TABLES:
        pattern = os.path.join(lake, table, "*", "*", "*.parquet")
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM "
            f"read_parquet({quoted(pattern)}, hive_partitioning = true, union_by_name = true)"
        )

    def run(text, params, csv=None):
        if csv is not None:
            con.execute(
                f"CREATE OR REPLACE VIEW requests AS SELECT * FROM read_csv({quoted(csv)}, header = true, "
                "columns = {'line': 'BIGINT', 'client_ip': 'VARCHAR', 'client_port': 'INTEGER', 'ts_ns': 'BIGINT'})"
            )
        # DuckDB names parameters $name; the SQL files use Spark's :name.
        text = re.sub(r":([a-z_]+)", r"$\1", text)
        cur = con.execute(text, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    return run


def spark_session(lake):
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("tracenat-lake")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    for table in TABLES:
        path = os.path.join(lake, table)
        if os.path.isdir(path):
            spark.read.option("basePath", path).parquet(path).createOrReplaceTempView(table)

    def run(text, params, csv=None):
        if csv is not None:
            spark.read.csv(
                csv, header=True, schema="line LONG, client_ip STRING, client_port INT, ts_ns LONG"
            ).createOrReplaceTempView("requests")
        rows = spark.sql(text, args=params).collect()
        return [row.asDict() for row in rows]

    return run


def session(engine, lake):
    return duckdb_session(lake) if engine == "duckdb" else spark_session(lake)


def holders(args):
    ip, _, port = args.public.partition(":")
    run = session(args.engine, args.lake)
    rows = run(
        sql("holders.sql"),
        {
            "public_ip": ip,
            "public_port": int(port) if port else -1,
            "protocol": args.protocol,
            "window_from": args.at - args.tolerance,
            "window_to": args.at + args.tolerance,
        },
    )
    subscribers = sorted({r["inside_ip"] for r in rows})
    verdict = {0: "none", 1: "unique"}.get(len(subscribers), "ambiguous")
    print(json.dumps({"verdict": verdict, "subscribers": subscribers, "candidates": rows}, default=str))


def attribute(args):
    run = session(args.engine, args.lake)
    params = {"tolerance": args.tolerance, "protocol": args.protocol}
    for row in run(sql("attribute.sql"), params, csv=args.requests):
        print(json.dumps({"line": row["line"], "verdict": row["verdict"], "subscribers": list(row["subscribers"] or [])}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("holders", "attribute"):
        p = sub.add_parser(name)
        p.add_argument("--engine", choices=("duckdb", "spark"), required=True)
        p.add_argument("--lake", required=True)
        p.add_argument("--tolerance", type=int, default=2_000_000_000)
    sub.choices["holders"].add_argument("--public", required=True)
    sub.choices["holders"].add_argument("--at", type=int, required=True)
    sub.choices["holders"].add_argument("--protocol", type=int, default=-1)
    sub.choices["attribute"].add_argument("--requests", required=True)
    sub.choices["attribute"].add_argument("--protocol", type=int, default=6)
    args = parser.parse_args()
    {"holders": holders, "attribute": attribute}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
