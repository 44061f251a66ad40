//! Measurements: latency in HdrHistograms (the whole run, and one per second for the
//! interval log), loss per flow from sequence gaps, and per-second counts.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer, V2Serializer};
use serde::Serialize;

/// Latencies are recorded in nanoseconds, 1 ns to 100 s, 3 significant digits.
const HIGHEST_NS: u64 = 100_000_000_000;

/// How `--hist-out` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistFormat {
    /// HdrHistogram interval log (text; one compressed V2 histogram per second), as
    /// HdrHistogram's HistogramLogProcessor and plotting tools read it.
    IntervalLog,
    /// The whole run's histogram, V2 serialized (uncompressed, binary).
    V2,
}

impl HistFormat {
    pub fn parse(text: &str) -> Result<HistFormat, String> {
        match text {
            "log" | "interval-log" => Ok(HistFormat::IntervalLog),
            "v2" => Ok(HistFormat::V2),
            other => Err(format!("histogram format {other:?}: expected log or v2")),
        }
    }
}

/// Percentiles of one histogram, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_ns: u64,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

impl LatencySummary {
    /// `p50 12.3 µs, p90 …` for the text report.
    pub fn describe(&self) -> String {
        if self.count == 0 {
            return "no samples".into();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        format!(
            "p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs ({} samples)",
            us(self.p50_ns),
            us(self.p90_ns),
            us(self.p99_ns),
            us(self.p999_ns),
            us(self.max_ns),
            self.count
        )
    }
}

/// A latency recorder: the whole run, plus a histogram per interval for the log.
#[derive(Debug, Clone)]
pub struct Latency {
    total: Histogram<u64>,
    interval: Histogram<u64>,
    interval_start_ns: u64,
    /// (start since the run's start, length, histogram) of each finished interval.
    intervals: Vec<(u64, u64, Histogram<u64>)>,
    run_start_ns: u64,
    /// Samples whose stamp was in the future (not recorded).
    pub negative: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("valid histogram bounds")
}

impl Latency {
    pub fn new(now_ns: u64) -> Latency {
        Latency {
            total: histogram(),
            interval: histogram(),
            interval_start_ns: now_ns,
            intervals: Vec::new(),
            run_start_ns: now_ns,
            negative: 0,
        }
    }

    /// One sample: received at `now_ns`, sent at `sent_ns`.
    #[inline]
    pub fn record(&mut self, sent_ns: u64, now_ns: u64) {
        match now_ns.checked_sub(sent_ns) {
            Some(ns) => {
                let ns = ns.max(1);
                self.total.saturating_record(ns);
                self.interval.saturating_record(ns);
            }
            None => self.negative += 1,
        }
    }

    /// Closes the current interval if a second has passed (allocates once a second).
    pub fn tick(&mut self, now_ns: u64) {
        if now_ns.saturating_sub(self.interval_start_ns) >= 1_000_000_000 {
            self.close_interval(now_ns);
        }
    }

    fn close_interval(&mut self, now_ns: u64) {
        let start = self.interval_start_ns.saturating_sub(self.run_start_ns);
        let len = now_ns.saturating_sub(self.interval_start_ns);
        let h = std::mem::replace(&mut self.interval, histogram());
        self.intervals.push((start, len, h));
        self.interval_start_ns = now_ns;
    }

    pub fn histogram(&self) -> &Histogram<u64> {
        &self.total
    }

    pub fn summary(&self) -> LatencySummary {
        let h = &self.total;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min_ns: h.min(),
            mean_ns: h.mean(),
            p50_ns: h.value_at_quantile(0.50),
            p90_ns: h.value_at_quantile(0.90),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
        }
    }

    /// Writes the histogram to `path`: the interval log (values in ns; a `#` comment
    /// says so) or the whole run V2-serialized.
    pub fn write(
        &mut self,
        path: &Path,
        format: HistFormat,
        now_ns: u64,
        tag: &str,
    ) -> std::io::Result<()> {
        let mut out = Vec::new();
        match format {
            HistFormat::V2 => {
                V2Serializer::new()
                    .serialize(&self.total, &mut out)
                    .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            }
            HistFormat::IntervalLog => {
                if !self.interval.is_empty() || self.intervals.is_empty() {
                    self.close_interval(now_ns);
                }
                let mut serializer = V2DeflateSerializer::new();
                let mut writer = IntervalLogWriterBuilder::new()
                    .add_comment(&format!("tracenat gen: {tag} latency in nanoseconds"))
                    .with_start_time(std::time::SystemTime::now())
                    .begin_log_with(&mut out, &mut serializer)?;
                let tag = Tag::new(tag);
                for (start, len, h) in &self.intervals {
                    writer
                        .write_histogram(
                            h,
                            Duration::from_nanos(*start),
                            Duration::from_nanos(*len),
                            tag,
                        )
                        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
                }
            }
        }
        let mut file = std::fs::File::create(path)?;
        file.write_all(&out)?;
        file.sync_all()
    }
}

/// Per flow: the highest sequence number seen plus one, and how many arrived.
#[derive(Debug, Clone, Copy, Default)]
struct FlowSeq {
    next: u32,
    received: u32,
}

/// Flow ids beyond this are counted but not tracked (bounds the table: 16 M flows).
pub const MAX_TRACKED_FLOWS: u32 = 1 << 24;

/// Loss from sequence gaps, per flow (by the flow id in the stamp).
#[derive(Debug, Clone, Default)]
pub struct LossTracker {
    flows: Vec<FlowSeq>,
    /// Frames that arrived after a later one of their flow.
    pub out_of_order: u64,
    pub untracked: u64,
}

/// What the sequence numbers say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LossSummary {
    /// Flows seen.
    pub flows: u64,
    pub received: u64,
    /// Sequence numbers missing below each flow's highest (loss at a flow's very end is
    /// not visible here; the sender's totals show it).
    pub lost: u64,
    pub flows_with_loss: u64,
    pub out_of_order: u64,
}

impl LossTracker {
    pub fn with_capacity(flows: usize) -> LossTracker {
        LossTracker {
            flows: Vec::with_capacity(flows),
            ..Default::default()
        }
    }

    #[inline]
    pub fn record(&mut self, flow: u32, seq: u32) {
        if flow >= MAX_TRACKED_FLOWS {
            self.untracked += 1;
            return;
        }
        let i = flow as usize;
        if i >= self.flows.len() {
            // Grows as flows appear (amortised; the sender sizes it up front).
            self.flows.resize(i + 1, FlowSeq::default());
        }
        let f = &mut self.flows[i];
        f.received = f.received.saturating_add(1);
        if seq < f.next {
            self.out_of_order += 1;
        } else {
            f.next = seq.saturating_add(1);
        }
    }

    pub fn summary(&self) -> LossSummary {
        let mut s = LossSummary {
            out_of_order: self.out_of_order,
            ..Default::default()
        };
        for f in self.flows.iter().filter(|f| f.received > 0) {
            s.flows += 1;
            s.received += u64::from(f.received);
            let lost = u64::from(f.next).saturating_sub(u64::from(f.received));
            s.lost += lost;
            s.flows_with_loss += u64::from(lost > 0);
        }
        s
    }
}

/// Counts per second of the run (for the report).
#[derive(Debug, Clone)]
pub struct PerSecond {
    start_ns: u64,
    last_total: u64,
    pub counts: Vec<u64>,
}

impl PerSecond {
    pub fn new(start_ns: u64, expected_seconds: usize) -> PerSecond {
        PerSecond {
            start_ns,
            last_total: 0,
            counts: Vec::with_capacity(expected_seconds + 2),
        }
    }

    /// Called often with the running total; closes each full second.
    #[inline]
    pub fn tick(&mut self, now_ns: u64, total: u64) {
        let second = now_ns.saturating_sub(self.start_ns) / 1_000_000_000;
        while (self.counts.len() as u64) < second {
            self.counts.push(total - self.last_total);
            self.last_total = total;
        }
    }

    /// The partial last second, if it has any packets.
    pub fn finish(mut self, total: u64) -> Vec<u64> {
        if total > self.last_total {
            self.counts.push(total - self.last_total);
        }
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_ordered_and_near_the_truth() {
        let mut l = Latency::new(0);
        for i in 1..=10_000u64 {
            l.record(1_000, 1_000 + i * 1_000);
        }
        l.record(10, 5);
        let s = l.summary();
        assert_eq!(s.count, 10_000);
        assert_eq!(l.negative, 1);
        assert!(s.p50_ns <= s.p90_ns && s.p90_ns <= s.p99_ns && s.p99_ns <= s.p999_ns);
        assert!(s.p999_ns <= s.max_ns);
        assert!((s.p50_ns as f64 - 5_000_000.0).abs() < 10_000.0, "{s:?}");
    }

    #[test]
    fn histograms_are_written_in_both_forms() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Latency::new(0);
        for t in 0..5u64 {
            l.tick(t * 1_000_000_000);
            l.record(t * 1_000_000_000, t * 1_000_000_000 + 10_000 + t);
        }
        let log = dir.path().join("lat.hlog");
        l.write(&log, HistFormat::IntervalLog, 5_000_000_000, "rtt")
            .unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        let mut n = 0;
        for item in
            hdrhistogram::serialization::interval_log::IntervalLogIterator::new(text.as_bytes())
        {
            if let hdrhistogram::serialization::interval_log::LogEntry::Interval(h) = item.unwrap()
            {
                assert_eq!(h.tag().map(|t| t.as_str()), Some("rtt"));
                n += 1;
            }
        }
        assert_eq!(n, 5);
        let v2 = dir.path().join("lat.hdr");
        l.write(&v2, HistFormat::V2, 5_000_000_000, "rtt").unwrap();
        let bytes = std::fs::read(&v2).unwrap();
        let h: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut &bytes[..])
            .unwrap();
        assert_eq!(h.len(), 5);
    }

    #[test]
    fn gaps_are_loss_and_late_frames_are_not() {
        let mut t = LossTracker::default();
        for seq in [0, 1, 2, 4, 3, 7] {
            t.record(5, seq);
        }
        t.record(1, 0);
        let s = t.summary();
        assert_eq!(s.flows, 2);
        assert_eq!(s.received, 7);
        assert_eq!(s.lost, 2); // 5 and 6
        assert_eq!(s.flows_with_loss, 1);
        assert_eq!(s.out_of_order, 1);
        t.record(MAX_TRACKED_FLOWS, 0);
        assert_eq!(t.untracked, 1);
    }

    #[test]
    fn per_second_counts_close_each_second() {
        let mut p = PerSecond::new(0, 3);
        p.tick(500_000_000, 10);
        p.tick(1_000_000_001, 20);
        p.tick(2_500_000_000, 50);
        assert_eq!(p.finish(55), vec![20, 30, 5]);
    }
}
