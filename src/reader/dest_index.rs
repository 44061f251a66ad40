//! Which mappings on a public address had a session towards a destination around a
//! moment: what a port-less question naming its server needs (a server log without client
//! ports). On a busy CGN address the mappings towards a popular server number in the
//! thousands over the minutes a sweep holds, but only those active at the question's moment
//! matter.
//!
//! Sessions are listed by start time. A question about `[from, to]` looks at those begun in
//! `[from − SHORT, to]`, plus the *long* ones: a session begun earlier can only have been
//! active at `from` if it lasted more than `SHORT`. Each session is examined once the sweep
//! has read `SHORT + L` past its start, `L` being the reader's look-ahead (the longest idle
//! timeout): a session whose traffic stopped within `SHORT` has its end, with its last
//! packet, logged by then. Still open then, or active for longer than `SHORT`, it is listed
//! as long. Questions are answered with the sweep `L` past their window, so every session
//! begun before `from − SHORT` has been examined. The answer is exactly the one a scan of
//! every mapping on the address would give.

use std::collections::VecDeque;

use hashbrown::HashMap;

use crate::reader::tracker::Key;

/// Sessions shorter than this are found by their start time alone.
pub(super) const SHORT_NS: u64 = 30 * 1_000_000_000;

/// A session towards a destination, as the index knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DestSession {
    pub key: Key,
    pub dest_ip: u32,
    pub start: u64,
}

#[derive(Debug, Default)]
struct Sessions {
    /// (start, key) in the order applied: time order, as one worker's records are.
    by_start: Vec<(u64, Key)>,
    /// Keys with a session that lasted, or may have lasted, more than `SHORT_NS`.
    long: Vec<Key>,
}

/// Sessions by (public address, destination address).
#[derive(Debug, Default)]
pub(super) struct DestIndex {
    by_dest: HashMap<(u32, u32), Sessions>,
    /// Sessions not yet examined for length, oldest first.
    young: VecDeque<DestSession>,
    /// How far the sweep has read: every record up to here is applied.
    position: u64,
    /// How long after `SHORT_NS` past its start a session is examined: the look-ahead.
    examine_delay: u64,
}

impl DestIndex {
    /// `examine_delay`: the reader's look-ahead past a question's window (0 when only
    /// questions with a port are asked, which do not use the index).
    pub fn new(examine_delay: u64) -> DestIndex {
        DestIndex {
            examine_delay,
            ..DestIndex::default()
        }
    }

    /// Whether a session begun at `start` is examined once the sweep is at `now`.
    fn due(&self, start: u64, now: u64) -> bool {
        start + SHORT_NS + self.examine_delay < now
    }

    pub fn started(&mut self, s: DestSession) {
        let list = self.by_dest.entry((s.key.0, s.dest_ip)).or_default();
        list.by_start.push((s.start, s.key));
        self.young.push_back(s);
    }

    /// The sweep has read everything up to `now`: sessions due are examined;
    /// `lasted_long` says whether one is still open or was active for more than
    /// `SHORT_NS` (false once it is forgotten).
    pub fn advance(&mut self, now: u64, lasted_long: impl Fn(&DestSession) -> bool) {
        self.position = self.position.max(now);
        while let Some(s) = self.young.front().filter(|s| self.due(s.start, now)) {
            let s = *s;
            self.young.pop_front();
            if lasted_long(&s) {
                self.mark_long(&s);
            }
        }
    }

    fn mark_long(&mut self, s: &DestSession) {
        let list = self.by_dest.entry((s.key.0, s.dest_ip)).or_default();
        list.long.push(s.key);
    }

    /// Adds the keys that can hold a session towards `dest` active in `[from, to]` (with
    /// repeats; the caller deduplicates).
    pub fn keys(&self, ip: u32, dest: u32, from: u64, to: u64, out: &mut Vec<Key>) {
        let Some(list) = self.by_dest.get(&(ip, dest)) else {
            return;
        };
        let first = list
            .by_start
            .partition_point(|(start, _)| *start < from.saturating_sub(SHORT_NS));
        let begun = list.by_start[first..]
            .iter()
            .take_while(|(start, _)| *start <= to)
            .map(|(_, key)| *key);
        out.extend(begun.chain(list.long.iter().copied()));
    }

    /// Starts over from the sessions still remembered after forgetting what ended before
    /// `cutoff` (no question reaches back before it): sessions begun `SHORT_NS` before it
    /// are only needed if they lasted long.
    pub fn rebuild(
        &mut self,
        sessions: impl Iterator<Item = DestSession>,
        cutoff: u64,
        lasted_long: impl Fn(&DestSession) -> bool,
    ) {
        self.by_dest.clear();
        let mut young: Vec<DestSession> = Vec::new();
        for s in sessions {
            let examined = self.due(s.start, self.position);
            if examined && lasted_long(&s) {
                self.mark_long(&s);
            }
            if s.start + SHORT_NS >= cutoff {
                let list = self.by_dest.entry((s.key.0, s.dest_ip)).or_default();
                list.by_start.push((s.start, s.key));
            }
            if !examined {
                young.push(s);
            }
        }
        for list in self.by_dest.values_mut() {
            list.by_start.sort_unstable();
        }
        young.sort_unstable_by_key(|s| s.start);
        self.young = young.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn session(port: u16, start_s: u64) -> DestSession {
        DestSession {
            key: (1, 6, port),
            dest_ip: 9,
            start: start_s * S,
        }
    }

    fn keys(index: &DestIndex, from_s: u64, to_s: u64) -> Vec<u16> {
        let mut out = Vec::new();
        index.keys(1, 9, from_s * S, to_s * S, &mut out);
        let mut ports: Vec<u16> = out.iter().map(|k| k.2).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    #[test]
    fn old_sessions_are_found_only_if_they_lasted_long() {
        let mut index = DestIndex::default();
        index.started(session(1000, 0)); // short: over by 5 s
        index.started(session(1001, 10)); // long: still open
        index.started(session(1002, 200));
        let long = |s: &DestSession| s.key.2 == 1001;
        index.advance(205 * S, long);
        assert_eq!(keys(&index, 200, 201), vec![1001, 1002]);
        assert_eq!(keys(&index, 20, 25), vec![1000, 1001]);
        // Another destination or address finds nothing.
        let mut out = Vec::new();
        index.keys(1, 8, 0, 300 * S, &mut out);
        index.keys(2, 9, 0, 300 * S, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_session_is_examined_only_once_its_end_can_have_been_read() {
        // With a 300 s look-ahead, a session begun at 0 is examined after 330 s: by then
        // an end 240 s after a 2 s burst is read, so it is short.
        let mut index = DestIndex::new(300 * S);
        index.started(session(1000, 0));
        let ended_short = |_: &DestSession| false;
        index.advance(100 * S, |_| panic!("examined before its end can be known"));
        index.advance(331 * S, ended_short);
        assert_eq!(keys(&index, 60, 61), Vec::<u16>::new());
        assert_eq!(keys(&index, 1, 2), vec![1000]);
    }

    #[test]
    fn a_session_younger_than_short_is_found_by_its_start() {
        let mut index = DestIndex::default();
        index.started(session(1000, 100));
        index.advance(110 * S, |_| false);
        assert_eq!(keys(&index, 105, 106), vec![1000]);
    }

    #[test]
    fn rebuild_keeps_what_later_questions_need() {
        let mut index = DestIndex::default();
        for (port, start) in [(1000, 0), (1001, 10), (1002, 290), (1003, 295)] {
            index.started(session(port, start));
        }
        let long = |s: &DestSession| s.key.2 == 1001;
        index.advance(300 * S, long);
        let remembered = [session(1001, 10), session(1002, 290), session(1003, 295)];
        index.rebuild(remembered.into_iter(), 280 * S, long);
        assert_eq!(keys(&index, 296, 297), vec![1001, 1002, 1003]);
        // 1003 is still young: examined when the sweep goes on.
        index.advance(400 * S, |s| s.key.2 != 1002);
        assert_eq!(keys(&index, 380, 381), vec![1001, 1003]);
    }
}
