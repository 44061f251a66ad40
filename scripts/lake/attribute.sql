-- Every request of a server's access log against tracenat's Parquet export: the same
-- question as holders.sql, asked for a whole table of requests at once (a join), for
-- DuckDB and Spark SQL alike. The runner (lake.py) defines `sessions` and `blocks` over
-- the export and `requests` over a CSV of (line, client_ip, client_port, ts_ns): the
-- access log's line number, client address and port (-1 when the log has none) and time.
--
-- Parameters:  :tolerance  nanoseconds either side of each request's time
--              :protocol   the requests' transport: 6 (TCP) for web servers' logs
--
-- One row per request: its verdict (unique / ambiguous / none) and the distinct
-- subscribers that fit, as `tracenat log attribute --json` gives them.
WITH candidates AS (
    SELECT r.line, s.inside_ip
    FROM requests r JOIN sessions s
      ON s.public_ip = r.client_ip
     AND s.protocol = :protocol
     AND (r.client_port < 0 OR s.public_port = r.client_port)
     AND coalesce(s.start_ns, 0) <= r.ts_ns + :tolerance
     AND CASE WHEN r.client_port < 0
              THEN coalesce(s.last_active_ns, s.end_ns, 9223372036854775807)
              ELSE coalesce(s.end_ns, 9223372036854775807) END >= r.ts_ns - :tolerance
    UNION
    SELECT r.line, b.inside_ip
    FROM requests r JOIN blocks b
      ON b.public_ip = r.client_ip
     AND (r.client_port < 0 OR (b.port_first <= r.client_port AND r.client_port <= b.port_last))
     AND coalesce(b.start_ns, 0) <= r.ts_ns + :tolerance
     AND coalesce(b.end_ns, 9223372036854775807) >= r.ts_ns - :tolerance
)
SELECT r.line,
       CASE count(DISTINCT c.inside_ip) WHEN 0 THEN 'none' WHEN 1 THEN 'unique' ELSE 'ambiguous' END
           AS verdict,
       array_sort(collect_set(c.inside_ip)) AS subscribers
FROM requests r LEFT JOIN candidates c ON c.line = r.line
GROUP BY r.line
ORDER BY r.line
