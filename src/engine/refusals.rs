//! Refusals without log amplification.
//!
//! A refused new session costs the refuser nothing, so a flooding subscriber (or a remote
//! party provoking refusals) could otherwise turn every refused packet into a log record:
//! an 8-second flood once wrote 388,045 records for 2,050 sessions. Instead, per
//! subscriber and reason, the first refusal of an interval is logged at once, with its
//! endpoints, and the rest of the interval are summed into one record written when the
//! interval closes. While refusals keep coming, each interval ends with one summary; an
//! interval without any closes silently. The log then grows by at most two records per
//! subscriber, reason and interval, and every refusal is still counted in it.
//!
//! The table of open intervals is bounded: past [`MAX_WINDOWS`] subscribers refusing at
//! once, further subscribers share one interval per reason, whose summaries carry inside
//! address 0 ("subscribers beyond the table").

use std::collections::VecDeque;

use super::event::{Event, EventKind};

/// Subscribers with an open refusal interval, per worker: 65,536 windows take about 6 MB.
pub const MAX_WINDOWS: usize = 1 << 16;

/// (subscriber's inside address — 0 for the shared overflow window —, reason).
type WindowKey = (u32, EventKind);

/// One subscriber's refusals for one reason in the current interval.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Refusals since the interval's first, not yet written.
    pending: u32,
    /// The latest of them: what the summary reports besides the count.
    latest: Event,
}

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The first of its interval: write it now (with `refused` = 1).
    Log,
    /// Counted toward its interval's summary.
    Aggregated,
}

#[derive(Debug)]
pub struct RefusalLog {
    interval_ns: u64,
    windows: hashbrown::HashMap<WindowKey, Window>,
    /// When each window closes, in order: windows open at `now + interval`, and `now` only
    /// grows, so pushing at the back keeps the queue sorted.
    closing: VecDeque<(u64, WindowKey)>,
}

impl RefusalLog {
    pub fn new(interval_ns: u64) -> RefusalLog {
        RefusalLog {
            interval_ns: interval_ns.max(1),
            windows: hashbrown::HashMap::new(),
            closing: VecDeque::new(),
        }
    }

    /// The window `event` counts in: its subscriber's, or the overflow window when the
    /// table is full.
    fn key(&self, event: &Event) -> WindowKey {
        let key = (event.inside_ip, event.kind);
        if self.windows.len() >= MAX_WINDOWS && !self.windows.contains_key(&key) {
            return (0, event.kind);
        }
        key
    }

    /// Files the refusal `event` (at `event.ts_ns`).
    pub fn offer(&mut self, event: &Event) -> Refusal {
        let key = self.key(event);
        if let Some(window) = self.windows.get_mut(&key) {
            window.pending = window.pending.saturating_add(1);
            window.latest = *event;
            return Refusal::Aggregated;
        }
        self.open(key, event.ts_ns, 0, *event);
        Refusal::Log
    }

    /// Counts a refusal that could not be written when it happened (no room in the log
    /// pipeline): it goes into its interval's summary instead of being lost.
    pub fn defer(&mut self, event: &Event) {
        let key = self.key(event);
        if let Some(window) = self.windows.get_mut(&key) {
            window.pending = window.pending.saturating_add(1);
        }
    }

    fn open(&mut self, key: WindowKey, now_ns: u64, pending: u32, latest: Event) {
        let closes_ns = now_ns.saturating_add(self.interval_ns);
        self.windows.insert(key, Window { pending, latest });
        self.closing.push_back((closes_ns, key));
    }

    /// Closes the intervals that ended by `now_ns`, handing `write` one summary per
    /// interval with refusals pending; `write` answers false when the log has no room,
    /// and that summary waits for a later call. A window with a summary stays open one
    /// more interval, so a steady flood is logged once per interval.
    pub fn close_due(&mut self, now_ns: u64, mut write: impl FnMut(Event) -> bool) {
        while let Some(&(closes_ns, key)) = self.closing.front() {
            if closes_ns > now_ns {
                break;
            }
            let Some(window) = self.windows.get(&key).copied() else {
                self.closing.pop_front();
                continue;
            };
            if window.pending > 0 && !write(summary(&window, key, now_ns)) {
                break;
            }
            self.closing.pop_front();
            self.windows.remove(&key);
            if window.pending > 0 {
                self.open(key, now_ns, 0, window.latest);
            }
        }
    }

    /// Writes every pending summary now (the engine is stopping): the sink takes them all.
    pub fn close_all(&mut self, now_ns: u64, mut write: impl FnMut(Event)) {
        for (key, window) in self.windows.drain() {
            if window.pending > 0 {
                write(summary(&window, key, now_ns));
            }
        }
        self.closing.clear();
    }

    /// Subscribers (and reasons) with an open interval.
    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }
}

/// The record of an interval's refusals after its first: the count, the subscriber (0 for
/// the overflow window), the reason, and the latest refusal's protocol and exhausted
/// address. No single flow's endpoints: it stands for many.
fn summary(window: &Window, (inside_ip, kind): WindowKey, now_ns: u64) -> Event {
    Event {
        kind,
        ts_ns: now_ns,
        inside_ip,
        inside_port: 0,
        dest_ip: 0,
        dest_port: 0,
        refused: window.pending,
        ..window.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn refusal(ts_ns: u64, inside_ip: u32, kind: EventKind) -> Event {
        Event {
            kind,
            ts_ns,
            worker: 0,
            protocol: 17,
            inside_ip,
            inside_port: 4000,
            public_ip: 0,
            public_port: 0,
            dest_ip: 0xC633_640A,
            dest_port: 53,
            block_first: 0,
            block_last: 0,
            last_active_ns: 0,
            refused: 1,
        }
    }

    /// Drives `per_second` refusals a second for `seconds` from `subscribers`, closing
    /// intervals as the engine does; returns the records written.
    fn flood(log: &mut RefusalLog, subscribers: u32, per_second: u64, seconds: u64) -> Vec<Event> {
        let mut written = Vec::new();
        let step = SEC / per_second;
        for i in 0..per_second * seconds {
            let now = i * step;
            log.close_due(now, |e| {
                written.push(e);
                true
            });
            let e = refusal(
                now,
                0x6440_0000 + (i as u32 % subscribers),
                EventKind::RefusedSubscriberLimit,
            );
            if log.offer(&e) == Refusal::Log {
                written.push(e);
            }
        }
        log.close_all(per_second * seconds * step, |e| written.push(e));
        written
    }

    #[test]
    fn a_flood_costs_two_records_per_interval_and_every_refusal_is_counted() {
        let mut log = RefusalLog::new(SEC);
        let written = flood(&mut log, 1, 50_000, 8);
        let counted: u64 = written.iter().map(|e| u64::from(e.refused)).sum();
        assert_eq!(counted, 400_000);
        // The first refusal, then one summary per second.
        assert!(written.len() <= 1 + 8 + 1, "{} records", written.len());
        assert_eq!(written[0].refused, 1);
        assert_eq!(
            written[0].inside_port, 4000,
            "the first keeps its endpoints"
        );
        assert!(
            written[1..]
                .iter()
                .all(|e| e.inside_port == 0 && e.refused > 1)
        );
    }

    #[test]
    fn a_quiet_interval_closes_without_a_record_and_the_next_refusal_is_logged_at_once() {
        let mut log = RefusalLog::new(SEC);
        let kind = EventKind::RefusedPortsExhausted;
        assert_eq!(log.offer(&refusal(0, 7, kind)), Refusal::Log);
        let mut written = 0;
        log.close_due(2 * SEC, |_| {
            written += 1;
            true
        });
        assert_eq!(written, 0);
        assert_eq!(log.open_windows(), 0);
        assert_eq!(log.offer(&refusal(3 * SEC, 7, kind)), Refusal::Log);
    }

    #[test]
    fn reasons_and_subscribers_have_separate_intervals() {
        let mut log = RefusalLog::new(SEC);
        assert_eq!(
            log.offer(&refusal(0, 7, EventKind::RefusedPortsExhausted)),
            Refusal::Log
        );
        assert_eq!(
            log.offer(&refusal(1, 7, EventKind::RefusedSubscriberLimit)),
            Refusal::Log
        );
        assert_eq!(
            log.offer(&refusal(2, 8, EventKind::RefusedPortsExhausted)),
            Refusal::Log
        );
        assert_eq!(
            log.offer(&refusal(3, 7, EventKind::RefusedPortsExhausted)),
            Refusal::Aggregated
        );
    }

    #[test]
    fn a_summary_without_room_waits_and_is_not_lost() {
        let mut log = RefusalLog::new(SEC);
        let kind = EventKind::RefusedSubscriberLimit;
        log.offer(&refusal(0, 7, kind));
        log.offer(&refusal(1, 7, kind));
        log.close_due(SEC, |_| false);
        let mut counted = 0;
        log.close_due(2 * SEC, |e| {
            counted += e.refused;
            true
        });
        assert_eq!(counted, 1);
    }

    #[test]
    fn past_the_table_subscribers_share_an_overflow_interval() {
        let mut log = RefusalLog::new(SEC);
        let kind = EventKind::RefusedPortsExhausted;
        for ip in 1..=MAX_WINDOWS as u32 {
            assert_eq!(log.offer(&refusal(0, ip, kind)), Refusal::Log);
        }
        // The first subscriber beyond the table opens the overflow window; the next share it.
        assert_eq!(log.offer(&refusal(1, u32::MAX, kind)), Refusal::Log);
        assert_eq!(
            log.offer(&refusal(2, u32::MAX - 1, kind)),
            Refusal::Aggregated
        );
        assert_eq!(log.open_windows(), MAX_WINDOWS + 1);
        let mut summaries = Vec::new();
        log.close_due(SEC + 2, |e| {
            summaries.push(e);
            true
        });
        assert_eq!(summaries.len(), 1);
        assert_eq!((summaries[0].inside_ip, summaries[0].refused), (0, 1));
    }
}
