-- Who held a public address (and port) in a time window: the attribution query over
-- tracenat's Parquet export (`tracenat log export --format parquet`), for DuckDB and
-- Spark SQL alike. It runs on two views the runner (lake.py) defines over the export:
-- `sessions` and `blocks`, with the partition columns `day` and `box`.
--
-- Parameters (named, bound by the engine — never pasted into the text):
--   :public_ip    dotted quad
--   :public_port  the port, or -1 when the server logged none
--   :protocol     6, 17, 1, or -1 for any
--   :window_from  nanoseconds since the epoch (the time minus the tolerance)
--   :window_to    nanoseconds since the epoch (the time plus the tolerance)
--
-- One row per candidate, as `tracenat log query` lists them: a session on that endpoint,
-- or a port block on the address (holding the port, when there is one), alive at some
-- point of the window. With a port, a
-- session counts from its creation to its end; without one, only while it carried
-- traffic (its creation to its last packet), which is what makes a port-less answer
-- narrower than "everyone on the address". The verdict is the number of distinct
-- subscribers (`inside_ip`): one is unique, more is ambiguous, none is none.
SELECT box, 'session' AS evidence, inside_ip, inside_port, public_ip, public_port,
       protocol, dest_ip, dest_port, start_ns, end_ns
FROM sessions
WHERE public_ip = :public_ip
  AND (:public_port < 0 OR public_port = :public_port)
  AND (:protocol < 0 OR protocol = :protocol)
  AND coalesce(start_ns, 0) <= :window_to
  AND CASE WHEN :public_port < 0
           THEN coalesce(last_active_ns, end_ns, 9223372036854775807)
           ELSE coalesce(end_ns, 9223372036854775807) END >= :window_from
UNION ALL
SELECT box, 'block' AS evidence, inside_ip, NULL AS inside_port, public_ip, NULL AS public_port,
       0 AS protocol, NULL AS dest_ip, NULL AS dest_port, start_ns, end_ns
FROM blocks
WHERE public_ip = :public_ip
  AND (:public_port < 0 OR (port_first <= :public_port AND :public_port <= port_last))
  AND coalesce(start_ns, 0) <= :window_to
  AND coalesce(end_ns, 9223372036854775807) >= :window_from
ORDER BY start_ns, inside_ip
