#!/usr/bin/env python3
"""Runs the attribution queries (holders.sql, attribute.sql) over tracenat's Parquet export
with DuckDB (embedded) or Spark SQL (local mode), the same SQL text on both.

  lake.py holders   --engine duckdb|spark --lake DIR --public IP[:PORT] --at NS [--tolerance NS] [--protocol N]
  lake.py attribute --engine duckdb|spark --lake DIR --requests CSV [--tolerance NS] [--protocol N]
  lake.py points    --engine duckdb|spark --lake DIR --questions JSONL

`points` is the benchmark's: it times holders.sql on each question of a JSON-lines file
({"public": "IP:PORT", "at": NS, "tolerance": NS, "expect": "INSIDE-IP"}) in one session and
prints the set-up time, each query's milliseconds and how many answers held `expect`.

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
import time

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


def holders_params(public, at, tolerance, protocol):
    ip, _, port = public.partition(":")
    return {
        "public_ip": ip,
        "public_port": int(port) if port else -1,
        "protocol": protocol,
        "window_from": at - tolerance,
        "window_to": at + tolerance,
    }


def holders(args):
    run = session(args.engine, args.lake)
    rows = run(sql("holders.sql"), holders_params(args.public, args.at, args.tolerance, args.protocol))
    subscribers = sorted({r["inside_ip"] for r in rows})
    verdict = {0: "none", 1: "unique"}.get(len(subscribers), "ambiguous")
    print(json.dumps({"verdict": verdict, "subscribers": subscribers, "candidates": rows}, default=str))


def attribute(args):
    run = session(args.engine, args.lake)
    params = {"tolerance": args.tolerance, "protocol": args.protocol}
    for row in run(sql("attribute.sql"), params, csv=args.requests):
        print(json.dumps({"line": row["line"], "verdict": row["verdict"], "subscribers": list(row["subscribers"] or [])}))


def points(args):
    started = time.perf_counter()
    run = session(args.engine, args.lake)
    setup_ms = (time.perf_counter() - started) * 1e3
    text = sql("holders.sql")
    times, found = [], 0
    with open(args.questions, encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            started = time.perf_counter()
            rows = run(text, holders_params(q["public"], q["at"], q["tolerance"], -1))
            times.append((time.perf_counter() - started) * 1e3)
            found += any(r["inside_ip"] == q["expect"] for r in rows)
    print(json.dumps({"setup_ms": setup_ms, "query_ms": times, "found": found}))


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
    p = sub.add_parser("points")
    p.add_argument("--engine", choices=("duckdb", "spark"), required=True)
    p.add_argument("--lake", required=True)
    p.add_argument("--questions", required=True)
    args = parser.parse_args()
    {"holders": holders, "attribute": attribute, "points": points}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
