#!/usr/bin/env python3
"""Latency-percentile plot (SVG) from HdrHistogram interval logs, with no dependency.

    scripts/plot-latency.py --out latency.svg [--title T] [--csv table.csv] \
        "tracenat=rtt-tracenat.hlog" "kernel nftables=rtt-kernel.hlog" ...

Each LABEL=FILE is an HdrHistogram interval log as written by `tracenat gen send
--hist-out FILE` (the default `--hist-format log`): one base64, zlib-compressed V2
histogram per line. The intervals of a file are added up into one histogram per system.
The plot has the percentile on a log-scaled x axis (50, 90, 99, 99.9, 99.99: the
distance is log10(1 / (1 - p))) and the latency on a log-scaled y axis, one line per
system, with the five named percentiles marked. It prints the percentiles as a table and,
with --csv, writes them. Only the Python standard library is used (base64, csv, zlib, struct),
so the plot needs nothing beyond python3 from Debian.
"""

import argparse
import base64
import csv
import html
import math
import struct
import sys
import zlib

V2_COOKIE = 0x1C849303
V2_COMPRESSED_COOKIE = 0x1C849304
NAMED = [50.0, 90.0, 99.0, 99.9, 99.99]
COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


class Hist:
    """An HdrHistogram: its configuration and counts by index."""

    def __init__(self, lowest, sigfigs):
        self.lowest = lowest
        self.sigfigs = sigfigs
        self.unit_magnitude = int(math.floor(math.log2(lowest)))
        largest_single = 2 * 10**sigfigs
        sub_bucket_count_magnitude = int(math.ceil(math.log2(largest_single)))
        self.half_mag = max(sub_bucket_count_magnitude - 1, 0)
        self.sub_bucket_count = 1 << (self.half_mag + 1)
        self.half_count = self.sub_bucket_count // 2
        self.counts = {}
        self.total = 0

    def value_range(self, index):
        """(lowest, highest) value equivalent to the bucket at `index`."""
        bucket = (index >> self.half_mag) - 1
        sub = (index & (self.half_count - 1)) + self.half_count
        if bucket < 0:
            sub -= self.half_count
            bucket = 0
        low = sub << (bucket + self.unit_magnitude)
        width = 1 << (bucket + self.unit_magnitude)
        return low, low + width - 1

    def add(self, index, count):
        self.counts[index] = self.counts.get(index, 0) + count
        self.total += count

    def percentile(self, p):
        """The value at percentile p, as HdrHistogram reports it (highest equivalent)."""
        if self.total == 0:
            return 0
        want = max(1, math.ceil(p / 100.0 * self.total))
        running = 0
        for index in sorted(self.counts):
            running += self.counts[index]
            if running >= want:
                return self.value_range(index)[1]
        return self.value_range(max(self.counts))[1]

    def maximum(self):
        return self.value_range(max(self.counts))[1] if self.counts else 0


def zigzag_varints(data):
    """The LEB128-64b9B ZigZag numbers of a V2 payload."""
    i, n = 0, len(data)
    while i < n:
        value, shift = 0, 0
        for k in range(9):
            b = data[i]
            i += 1
            if k == 8:
                value |= b << shift
                break
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        yield (value >> 1) ^ -(value & 1)


def decode_into(hists, blob):
    """Adds one encoded histogram (compressed or not) to `hists` (keyed by config)."""
    cookie, = struct.unpack(">i", blob[:4])
    if cookie & ~0xF0 == V2_COMPRESSED_COOKIE & ~0xF0 and cookie != V2_COOKIE:
        length, = struct.unpack(">i", blob[4:8])
        blob = zlib.decompress(blob[8:8 + length])
        cookie, = struct.unpack(">i", blob[:4])
    if cookie & ~0xF0 != V2_COOKIE & ~0xF0:
        raise ValueError("not a V2 HdrHistogram (cookie %#x)" % cookie)
    payload_len, _offset, sigfigs, lowest, _highest = struct.unpack(">iiiqq", blob[4:32])
    payload = blob[40:40 + payload_len]
    key = (lowest, sigfigs)
    h = hists.setdefault(key, Hist(lowest, sigfigs))
    index = 0
    for v in zigzag_varints(payload):
        if v < 0:
            index += -v
        else:
            if v:
                h.add(index, v)
            index += 1


def load(path):
    """All the intervals of an interval log (or one V2 file), added up."""
    hists = {}
    raw = open(path, "rb").read()
    if raw[:1] in (b"#", b"\"", b"T", b"S", b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7",
                   b"8", b"9", b"B", b"\n"):
        for line in raw.decode("ascii", "replace").splitlines():
            line = line.strip()
            if not line or line.startswith("#") or line.startswith('"'):
                continue
            if line.startswith("StartTime") or line.startswith("BaseTime"):
                continue
            fields = line.split(",")
            if len(fields) < 4:
                continue
            decode_into(hists, base64.b64decode(fields[-1]))
    else:
        decode_into(hists, raw)
    if not hists:
        raise ValueError("%s: no histogram" % path)
    if len(hists) > 1:
        raise ValueError("%s: histograms with different configurations" % path)
    return next(iter(hists.values()))


def fmt_us(ns):
    us = ns / 1000.0
    return "%.0f" % us if us >= 100 else ("%.1f" % us if us >= 10 else "%.2f" % us)


def x_of(p):
    return math.log10(1.0 / (1.0 - p / 100.0))


def svg(series, title, unit_ns=1000.0):
    """series: [(label, [(p, ns)], named {p: ns})]."""
    W, H = 860, 520
    left, right, top, bottom = 90, 220, 50, 70
    pw, ph = W - left - right, H - top - bottom
    xmin, xmax = 0.0, x_of(99.999)
    values = [ns for _, pts, _ in series for _, ns in pts if ns > 0]
    lo = math.floor(math.log10(min(values) / unit_ns))
    hi = math.ceil(math.log10(max(values) / unit_ns))
    if hi <= lo:
        hi = lo + 1

    def X(p):
        return left + (x_of(p) - xmin) / (xmax - xmin) * pw

    def Y(ns):
        v = math.log10(max(ns, 1) / unit_ns)
        return top + ph - (v - lo) / (hi - lo) * ph

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" '
           'font-size="13">' % (W, H, W, H),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="28" font-size="16" font-weight="bold">%s</text>'
           % (left, html.escape(title))]
    # Grid: decades and 2, 5 within them on y; the percentiles on x.
    for d in range(lo, hi + 1):
        for m in (1, 2, 5):
            v = m * 10**d
            if math.log10(v) > hi + 1e-9:
                continue
            y = Y(v * unit_ns)
            out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s"/>'
                       % (left, left + pw, y, y, "#bbb" if m == 1 else "#eee"))
            label = ("%g" % v) if v >= 1 else ("%g" % v)
            out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>'
                       % (left - 8, y + 4, label))
    for p in [0.0] + NAMED + [99.999]:
        x = X(p)
        out.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#ddd"/>'
                   % (x, x, top, top + ph))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
                   % (x, top + ph + 20, "%g" % p))
    out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>'
               % (left, top, pw, ph))
    out.append('<text x="%.1f" y="%d" text-anchor="middle">percentile (log scale: '
               'distance = log10(1/(1-p)))</text>' % (left + pw / 2, H - 20))
    out.append('<text transform="translate(24,%.1f) rotate(-90)" text-anchor="middle">'
               'round-trip latency (µs, log scale)</text>' % (top + ph / 2))
    for i, (label, pts, named) in enumerate(series):
        c = COLOURS[i % len(COLOURS)]
        path = " ".join("%s%.1f,%.1f" % ("M" if k == 0 else "L", X(p), Y(ns))
                        for k, (p, ns) in enumerate(pts))
        out.append('<path d="%s" fill="none" stroke="%s" stroke-width="2"/>' % (path, c))
        for p in NAMED:
            out.append('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>'
                       % (X(p), Y(named[p]), c))
        ly = top + 10 + i * 70
        out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="3"/>'
                   % (left + pw + 15, left + pw + 40, ly, ly, c))
        out.append('<text x="%d" y="%d">%s</text>' % (left + pw + 46, ly + 4,
                                                     html.escape(label)))
        out.append('<text x="%d" y="%d" font-size="11" fill="#444">p50 %s  p99 %s µs</text>'
                   % (left + pw + 46, ly + 22, fmt_us(named[50.0]), fmt_us(named[99.0])))
        out.append('<text x="%d" y="%d" font-size="11" fill="#444">p99.9 %s  p99.99 %s</text>'
                   % (left + pw + 46, ly + 38, fmt_us(named[99.9]), fmt_us(named[99.99])))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("series", nargs="+", metavar="LABEL=FILE")
    ap.add_argument("--out", required=True, help="the SVG to write")
    ap.add_argument("--title", default="Round-trip latency through the NAT")
    ap.add_argument("--csv", help="also write the percentiles here")
    a = ap.parse_args()
    series = []
    for s in a.series:
        label, _, path = s.partition("=")
        if not path:
            ap.error("%r: expected LABEL=FILE" % s)
        h = load(path)
        # A smooth curve: many percentiles, denser toward the tail.
        ps = []
        for k in range(0, 501):
            p = 100.0 * (1.0 - 10 ** (-(k / 100.0)))
            if p > 99.999:
                break
            ps.append(p)
        pts = [(p, h.percentile(p)) for p in ps]
        named = {p: h.percentile(p) for p in NAMED}
        series.append((label, pts, named, h))
    with open(a.out, "w") as f:
        f.write(svg([(l, pts, named) for l, pts, named, _ in series], a.title))
    head = "%-28s %10s " % ("system", "samples") + " ".join(
        "%9s" % ("p%g" % p) for p in NAMED) + " %9s" % "max"
    print(head + "   (µs)")
    rows = []
    for label, _, named, h in series:
        vals = [named[p] for p in NAMED] + [h.maximum()]
        print("%-28s %10d " % (label, h.total) + " ".join("%9s" % fmt_us(v) for v in vals))
        rows.append([label, str(h.total)] + ["%.3f" % (v / 1000.0) for v in vals])
    if a.csv:
        # csv quotes labels that hold a comma, e.g. "tracenat (1 worker, no NAT)".
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["system", "samples"] + ["p%g_us" % p for p in NAMED] + ["max_us"])
            w.writerows(rows)
    print("plot: %s" % a.out)


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, zlib.error) as e:
        print("plot-latency: %s" % e, file=sys.stderr)
        sys.exit(1)
