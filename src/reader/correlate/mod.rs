//! Narrowing by actor: requests that name the same actor (user, user agent, API key…) were
//! made by one subscriber, so only a subscriber that could have made every one of them can
//! be behind the group.
//!
//! Each request's candidate set is computed exactly as for the request alone (its own
//! destination and window); a group intersects them by subscriber *address*:
//!
//! - `unique`: exactly one subscriber could have made every request of the group;
//! - `ambiguous`: several could — each is listed with how many requests it fits (all);
//! - `conflict`: nobody fits them all (the actor moved networks, or a request came from
//!   elsewhere) — the subscribers that fit the most requests are listed with the lines they
//!   cover; no answer is forced;
//! - `none`: no request of the group had any candidate;
//! - `undetermined`: the group's first request had more candidates than are followed per
//!   group ([`GroupLimits::max_subscribers`]), so who fits them all cannot be said.
//!
//! # Memory
//!
//! A hostile log may hold a billion requests of one actor, or millions of actors. Per group
//! only the request count, its first [`LINES_KEPT`] line numbers and a sorted list of
//! subscriber → (requests fitted, which of the first [`LINES_KEPT`] requests) are kept, at
//! most [`GroupLimits::max_subscribers`] entries; across groups at most
//! [`GroupLimits::max_tracked`] entries and [`GroupLimits::max_groups`] groups. Values are
//! keyed by their BLAKE3 hash and shown cut to [`KEY_SHOWN`] bytes, so a long value costs
//! no more than a short one. Beyond the caps:
//!
//! - a request whose value starts a group past `max_groups` is not grouped (counted as
//!   `over_group_cap`; its own verdict still stands);
//! - a subscriber first seen in a group whose list is full is not followed (the group
//!   counts it). That is harmless to the verdict when it happens after the group's first
//!   request: a subscriber absent from the first request cannot fit them all, and every
//!   subscriber of the first request is followed. Only when the first request itself
//!   overflows is the group `undetermined`.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::reader::model::{Answer, Candidate};

mod output;
pub use output::{write_group_json, write_group_summary, write_group_text};

/// Line numbers kept per group, and requests whose coverage is kept per subscriber.
pub const LINES_KEPT: usize = 64;
/// Bytes of a value kept for display.
pub const KEY_SHOWN: usize = 120;
/// Subscribers listed per group beyond those fitting every request (largest first).
pub const OTHERS_SHOWN: usize = 8;

/// The caps on what [`Groups`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// Groups held.
    pub max_groups: usize,
    /// Subscribers followed per group.
    pub max_subscribers: usize,
    /// Subscribers followed over all groups together.
    pub max_tracked: usize,
}

impl Default for GroupLimits {
    /// About 500 MB at the very worst (every cap reached), a few hundred bytes per
    /// ordinary group.
    fn default() -> Self {
        GroupLimits {
            max_groups: 1 << 18,
            max_subscribers: 4096,
            max_tracked: 8 << 20,
        }
    }
}

/// A group's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupVerdict {
    Unique,
    Ambiguous,
    Conflict,
    None,
    Undetermined,
}

impl GroupVerdict {
    pub fn name(self) -> &'static str {
        match self {
            GroupVerdict::Unique => "unique",
            GroupVerdict::Ambiguous => "ambiguous",
            GroupVerdict::Conflict => "conflict",
            GroupVerdict::None => "none",
            GroupVerdict::Undetermined => "undetermined",
        }
    }
}

/// One subscriber followed in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tracked {
    subscriber: Ipv4Addr,
    /// Requests of the group it could have made.
    requests: u64,
    /// Bit i: it could have made the group's request i (i < [`LINES_KEPT`]).
    covered: u64,
}

#[derive(Debug, Clone)]
struct Group {
    shown: String,
    value_len: usize,
    requests: u64,
    /// Line numbers of the first [`LINES_KEPT`] requests.
    lines: Vec<u64>,
    /// Sorted by subscriber.
    tracked: Vec<Tracked>,
    /// Subscribers seen but not followed, and whether that happened on the first request.
    refused: u64,
    refused_first: bool,
}

/// How well one subscriber fits a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fit {
    pub subscriber: Ipv4Addr,
    /// Requests of the group it could have made.
    pub requests: u64,
    /// Their line numbers, among the group's first [`LINES_KEPT`] requests.
    pub lines: Vec<u64>,
}

/// A group's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupResult {
    /// The value, cut to [`KEY_SHOWN`] bytes (at a character boundary).
    pub value: String,
    pub value_truncated: bool,
    pub requests: u64,
    /// The first [`LINES_KEPT`] line numbers.
    pub lines: Vec<u64>,
    pub verdict: GroupVerdict,
    /// Every subscriber that could have made all the requests, sorted.
    pub fit_all: Vec<Fit>,
    /// Up to [`OTHERS_SHOWN`] more, by requests fitted (most first): for a conflict, the
    /// largest consistent subsets.
    pub others: Vec<Fit>,
    /// Subscribers not followed (over the caps).
    pub not_followed: u64,
}

/// Counts over all groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupSummary {
    pub groups: u64,
    pub unique: u64,
    pub ambiguous: u64,
    pub conflict: u64,
    pub none: u64,
    pub undetermined: u64,
    /// Requests in groups whose verdict is unique.
    pub requests_in_unique: u64,
    /// Requests that name no actor (no value, empty or `-`): not grouped.
    pub without_value: u64,
    /// Requests with a value that would have started a group past the cap: not grouped.
    pub over_group_cap: u64,
    /// Groups in which some subscriber was not followed (over the caps).
    pub groups_capped: u64,
}

/// Requests grouped by actor, their candidate sets intersected as they come.
///
/// ```
/// use tracenat::reader::correlate::{Groups, GroupVerdict};
/// let mut groups = Groups::default();
/// let a = "100.64.0.1".parse().unwrap();
/// let b = "100.64.0.2".parse().unwrap();
/// groups.add_subscribers(Some("alice"), 1, &[a, b]);
/// groups.add_subscribers(Some("alice"), 2, &[a]);
/// let results = groups.results();
/// assert_eq!(results[0].verdict, GroupVerdict::Unique);
/// ```
#[derive(Debug, Default)]
pub struct Groups {
    limits: GroupLimits,
    index: HashMap<[u8; 32], u32>,
    groups: Vec<Group>,
    tracked: usize,
    without_value: u64,
    over_group_cap: u64,
    scratch: Vec<Tracked>,
    addresses: Vec<Ipv4Addr>,
}

impl Groups {
    pub fn new(limits: GroupLimits) -> Groups {
        Groups {
            limits,
            ..Groups::default()
        }
    }

    /// Adds one request: the actor it names (`None`: none) and its answer.
    pub fn add(&mut self, value: Option<&str>, line_no: u64, answer: &Answer) {
        let mut addresses = std::mem::take(&mut self.addresses);
        subscriber_addresses(&answer.candidates, &mut addresses);
        self.add_subscribers(value, line_no, &addresses);
        self.addresses = addresses;
    }

    /// Adds one request given its distinct candidate addresses, sorted.
    pub fn add_subscribers(&mut self, value: Option<&str>, line_no: u64, sorted: &[Ipv4Addr]) {
        let Some(value) = value else {
            self.without_value += 1;
            return;
        };
        let Some(at) = self.group_of(value) else {
            self.over_group_cap += 1;
            return;
        };
        let budget = self.limits.max_tracked.saturating_sub(self.tracked);
        let group = &mut self.groups[at];
        let added = group.intersect(sorted, line_no, budget, self.limits, &mut self.scratch);
        self.tracked += added;
    }

    /// The group of a value, created when new and the cap allows.
    fn group_of(&mut self, value: &str) -> Option<usize> {
        let key = *blake3::hash(value.as_bytes()).as_bytes();
        if let Some(&at) = self.index.get(&key) {
            return Some(at as usize);
        }
        if self.groups.len() >= self.limits.max_groups {
            return None;
        }
        let at = self.groups.len();
        self.groups.push(Group::new(value));
        self.index.insert(key, at as u32);
        Some(at)
    }

    /// Every group's outcome, in the order the groups first appeared.
    pub fn results(&self) -> Vec<GroupResult> {
        self.groups.iter().map(Group::result).collect()
    }

    pub fn summary(&self) -> GroupSummary {
        let mut summary = GroupSummary {
            without_value: self.without_value,
            over_group_cap: self.over_group_cap,
            ..GroupSummary::default()
        };
        for group in &self.groups {
            summary.groups += 1;
            summary.groups_capped += u64::from(group.refused > 0);
            match group.verdict() {
                GroupVerdict::Unique => {
                    summary.unique += 1;
                    summary.requests_in_unique += group.requests;
                }
                GroupVerdict::Ambiguous => summary.ambiguous += 1,
                GroupVerdict::Conflict => summary.conflict += 1,
                GroupVerdict::None => summary.none += 1,
                GroupVerdict::Undetermined => summary.undetermined += 1,
            }
        }
        summary
    }
}

/// The distinct subscriber addresses, sorted, into `into`.
pub fn subscriber_addresses(candidates: &[Candidate], into: &mut Vec<Ipv4Addr>) {
    into.clear();
    into.extend(candidates.iter().map(|c| *c.subscriber.ip()));
    into.sort_unstable();
    into.dedup();
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Group {
    fn new(value: &str) -> Group {
        Group {
            shown: cut(value, KEY_SHOWN).to_owned(),
            value_len: value.len(),
            requests: 0,
            lines: Vec::new(),
            tracked: Vec::new(),
            refused: 0,
            refused_first: false,
        }
    }

    /// Merges one request's sorted addresses into the followed subscribers; new ones are
    /// followed while the group's cap and `budget` allow. Returns how many were added.
    fn intersect(
        &mut self,
        sorted: &[Ipv4Addr],
        line_no: u64,
        budget: usize,
        limits: GroupLimits,
        scratch: &mut Vec<Tracked>,
    ) -> usize {
        let index = self.requests;
        self.requests += 1;
        if self.lines.len() < LINES_KEPT {
            self.lines.push(line_no);
        }
        let bit = if index < LINES_KEPT as u64 {
            1u64 << index
        } else {
            0
        };
        let room = limits
            .max_subscribers
            .saturating_sub(self.tracked.len())
            .min(budget);
        scratch.clear();
        let (mut i, mut j, mut added) = (0, 0, 0);
        while i < self.tracked.len() || j < sorted.len() {
            let old = self.tracked.get(i);
            let new = sorted.get(j).copied();
            match (old, new) {
                (Some(t), Some(a)) if t.subscriber == a => {
                    scratch.push(Tracked {
                        requests: t.requests + 1,
                        covered: t.covered | bit,
                        ..*t
                    });
                    i += 1;
                    j += 1;
                }
                (Some(t), Some(a)) if t.subscriber < a => {
                    scratch.push(*t);
                    i += 1;
                }
                (Some(t), None) => {
                    scratch.push(*t);
                    i += 1;
                }
                (_, Some(a)) => {
                    j += 1;
                    if added < room {
                        added += 1;
                        scratch.push(Tracked {
                            subscriber: a,
                            requests: 1,
                            covered: bit,
                        });
                    } else {
                        self.refused += 1;
                        self.refused_first |= index == 0;
                    }
                }
                (None, None) => break,
            }
        }
        // Copied rather than swapped: a swap would hand this group the scratch buffer,
        // sized by the largest group seen, and memory would no longer follow the caps.
        self.tracked.clear();
        self.tracked.extend_from_slice(scratch);
        added
    }

    fn fit_all(&self) -> impl Iterator<Item = &Tracked> {
        self.tracked.iter().filter(|t| t.requests == self.requests)
    }

    fn verdict(&self) -> GroupVerdict {
        let fitting = self.fit_all().take(2).count();
        match (fitting, self.refused_first) {
            (2, _) => GroupVerdict::Ambiguous,
            // Subscribers of the first request were left out: more may fit.
            (1, true) => GroupVerdict::Ambiguous,
            (1, false) => GroupVerdict::Unique,
            (_, true) => GroupVerdict::Undetermined,
            _ if self.tracked.is_empty() && self.refused == 0 => GroupVerdict::None,
            _ => GroupVerdict::Conflict,
        }
    }

    fn fit(&self, t: &Tracked) -> Fit {
        let lines = self
            .lines
            .iter()
            .enumerate()
            .filter(|(i, _)| t.covered & (1u64 << i) != 0)
            .map(|(_, &line)| line)
            .collect();
        Fit {
            subscriber: t.subscriber,
            requests: t.requests,
            lines,
        }
    }

    fn result(&self) -> GroupResult {
        let fit_all = self.fit_all().map(|t| self.fit(t)).collect();
        let mut others: Vec<&Tracked> = self
            .tracked
            .iter()
            .filter(|t| t.requests < self.requests)
            .collect();
        // Most requests first; equal counts by address, so the output is stable.
        others.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then(a.subscriber.cmp(&b.subscriber))
        });
        GroupResult {
            value: self.shown.clone(),
            value_truncated: self.shown.len() < self.value_len,
            requests: self.requests,
            lines: self.lines.clone(),
            verdict: self.verdict(),
            fit_all,
            others: others
                .into_iter()
                .take(OTHERS_SHOWN)
                .map(|t| self.fit(t))
                .collect(),
            not_followed: self.refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sub(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(100, 64, 0, n)
    }

    fn subs(ns: &[u8]) -> Vec<Ipv4Addr> {
        let mut v: Vec<_> = ns.iter().map(|&n| sub(n)).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Adds requests `(value, line, candidates)` and returns the results by value.
    fn grouped(limits: GroupLimits, requests: &[(Option<&str>, u64, &[u8])]) -> Groups {
        let mut groups = Groups::new(limits);
        for (value, line, candidates) in requests {
            groups.add_subscribers(*value, *line, &subs(candidates));
        }
        groups
    }

    #[test]
    fn verdicts() {
        let groups = grouped(
            GroupLimits::default(),
            &[
                (Some("alice"), 1, &[1, 2, 3]),
                (Some("bob"), 2, &[4, 5]),
                (Some("alice"), 3, &[2, 3, 7]),
                (Some("carol"), 4, &[8]),
                (Some("alice"), 5, &[2, 9]),
                (None, 6, &[1]),
                (Some("bob"), 7, &[4, 5, 6]),
                (Some("carol"), 8, &[9]),
                (Some("dave"), 9, &[]),
                (Some("carol"), 10, &[8, 10]),
            ],
        );
        let results = groups.results();
        let by = |v: &str| results.iter().find(|r| r.value == v).unwrap();

        let alice = by("alice");
        assert_eq!(alice.verdict, GroupVerdict::Unique);
        assert_eq!(alice.requests, 3);
        assert_eq!(alice.lines, vec![1, 3, 5]);
        assert_eq!(alice.fit_all.len(), 1);
        assert_eq!(alice.fit_all[0].subscriber, sub(2));
        assert_eq!(alice.fit_all[0].lines, vec![1, 3, 5]);
        // The others, most requests first: 3 fits two of three.
        assert_eq!(alice.others[0].subscriber, sub(3));
        assert_eq!(
            (alice.others[0].requests, &alice.others[0].lines[..]),
            (2, &[1, 3][..])
        );

        let bob = by("bob");
        assert_eq!(bob.verdict, GroupVerdict::Ambiguous);
        let fit: Vec<_> = bob
            .fit_all
            .iter()
            .map(|f| (f.subscriber, f.requests))
            .collect();
        assert_eq!(fit, vec![(sub(4), 2), (sub(5), 2)]);
        assert_eq!(bob.others.len(), 1);

        let carol = by("carol");
        assert_eq!(carol.verdict, GroupVerdict::Conflict);
        assert!(carol.fit_all.is_empty());
        assert_eq!(carol.others[0].subscriber, sub(8));
        assert_eq!(carol.others[0].requests, 2);
        assert_eq!(carol.others[0].lines, vec![4, 10]);
        assert_eq!(carol.others[1].lines, vec![8]);

        assert_eq!(by("dave").verdict, GroupVerdict::None);

        let summary = groups.summary();
        assert_eq!(
            summary,
            GroupSummary {
                groups: 4,
                unique: 1,
                ambiguous: 1,
                conflict: 1,
                none: 1,
                requests_in_unique: 3,
                without_value: 1,
                ..GroupSummary::default()
            }
        );
    }

    #[test]
    fn a_group_of_one_is_its_request() {
        let groups = grouped(
            GroupLimits::default(),
            &[
                (Some("a"), 1, &[1]),
                (Some("b"), 2, &[1, 2]),
                (Some("c"), 3, &[]),
            ],
        );
        let verdicts: Vec<_> = groups.results().iter().map(|r| r.verdict).collect();
        assert_eq!(
            verdicts,
            vec![
                GroupVerdict::Unique,
                GroupVerdict::Ambiguous,
                GroupVerdict::None
            ]
        );
    }

    #[test]
    fn caps_are_honest() {
        let limits = GroupLimits {
            max_groups: 2,
            max_subscribers: 3,
            max_tracked: 100,
        };
        let groups = grouped(
            limits,
            &[
                // The first request fits: later subscribers over the cap cannot fit all.
                (Some("a"), 1, &[1, 2]),
                (Some("a"), 2, &[1, 5, 6, 7]),
                (Some("a"), 3, &[1, 8]),
                // The first request overflows: who fits all is unknown.
                (Some("b"), 4, &[1, 2, 3, 4, 5]),
                (Some("b"), 5, &[9]),
                (Some("c"), 6, &[1]),
            ],
        );
        let results = groups.results();
        assert_eq!(results[0].verdict, GroupVerdict::Unique);
        assert_eq!(results[0].not_followed, 3, "6, 7 and 8");
        assert_eq!(results[1].verdict, GroupVerdict::Undetermined);
        let summary = groups.summary();
        assert_eq!(summary.over_group_cap, 1);
        assert_eq!(summary.groups_capped, 2);

        // One subscriber fits, but more of the first request were not followed.
        let groups = grouped(
            limits,
            &[(Some("d"), 1, &[1, 2, 3, 4]), (Some("d"), 2, &[1])],
        );
        assert_eq!(groups.results()[0].verdict, GroupVerdict::Ambiguous);

        // The budget over all groups.
        let limits = GroupLimits {
            max_tracked: 2,
            ..GroupLimits::default()
        };
        let groups = grouped(limits, &[(Some("e"), 1, &[1, 2]), (Some("f"), 2, &[3])]);
        assert_eq!(groups.results()[1].verdict, GroupVerdict::Undetermined);
    }

    #[test]
    fn one_actor_with_many_requests_stays_bounded() {
        let mut groups = Groups::default();
        let all: Vec<Ipv4Addr> = (0..8192u32)
            .map(|n| Ipv4Addr::from(0x6440_0000 + n))
            .collect();
        groups.add_subscribers(
            Some("bot"),
            1,
            &all[..GroupLimits::default().max_subscribers],
        );
        for line in 2..20_000u64 {
            let at = (line as usize * 7) % 8000;
            groups.add_subscribers(Some("bot"), line, &all[at..at + 50]);
        }
        let result = &groups.results()[0];
        assert_eq!(result.requests, 19_999);
        assert_eq!(result.lines.len(), LINES_KEPT);
        assert!(groups.tracked <= GroupLimits::default().max_subscribers);
        assert_eq!(result.verdict, GroupVerdict::Conflict);
        assert!(result.others.len() <= OTHERS_SHOWN);
    }

    #[test]
    fn long_values_are_keyed_whole_and_shown_cut() {
        let long_a = format!("{}a", "é".repeat(200));
        let long_b = format!("{}b", "é".repeat(200));
        let groups = grouped(
            GroupLimits::default(),
            &[(Some(&long_a), 1, &[1]), (Some(&long_b), 2, &[2])],
        );
        let results = groups.results();
        assert_eq!(
            results.len(),
            2,
            "values differing past the shown part are distinct"
        );
        assert!(results[0].value_truncated);
        assert!(results[0].value.len() <= KEY_SHOWN);
    }

    #[test]
    fn text_and_json_output() {
        let groups = grouped(
            GroupLimits::default(),
            &[
                (Some("x\u{1b}[31m"), 3, &[1, 2]),
                (Some("x\u{1b}[31m"), 9, &[2]),
                (Some("y"), 4, &[1]),
                (Some("y"), 5, &[2]),
            ],
        );
        let results = groups.results();
        let mut text = Vec::new();
        write_group_text(&mut text, 1, "user", &results[0]).unwrap();
        write_group_text(&mut text, 2, "user", &results[1]).unwrap();
        write_group_summary(&mut text, "user", &groups.summary(), false).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(!text.contains('\u{1b}'), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"group 1  user "x\u{1b}[31m"  2 requests  (lines 3, 9)  unique 100.64.0.2 (2 of 2)"#
        );
        assert_eq!(
            lines[1],
            r#"group 2  user "y"  2 requests  (lines 4, 5)  conflict: most requests fitted by 100.64.0.1 (1 of 2: line 4), 100.64.0.2 (1 of 2: line 5)"#
        );
        assert!(lines[2].starts_with("2 groups by user: 1 unique, 0 ambiguous, 1 conflict"));

        let mut json = Vec::new();
        write_group_json(&mut json, "user", &results[1]).unwrap();
        write_group_summary(&mut json, "user", &groups.summary(), true).unwrap();
        let objects: Vec<serde_json::Value> = String::from_utf8(json)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let g = &objects[0]["group"];
        assert_eq!(g["verdict"], "conflict");
        assert_eq!(g["lines"], serde_json::json!([4, 5]));
        assert_eq!(g["others"][1]["subscriber"], "100.64.0.2");
        assert_eq!(g["others"][1]["lines"], serde_json::json!([5]));
        assert_eq!(objects[1]["group_summary"]["conflict"], 1);
        assert_eq!(objects[1]["group_summary"]["requests_in_unique"], 2);
    }

    proptest! {
        /// Against a direct computation: the subscribers fitting every request are the
        /// intersection of the candidate sets, and each count is exact.
        #[test]
        fn matches_a_direct_intersection(
            requests in prop::collection::vec(
                (0u8..4, prop::collection::vec(0u8..12, 0..6)), 1..40)
        ) {
            let mut groups = Groups::default();
            for (line, (actor, candidates)) in requests.iter().enumerate() {
                groups.add_subscribers(Some(&actor.to_string()), line as u64 + 1, &subs(candidates));
            }
            for result in groups.results() {
                let mine: Vec<_> = requests.iter().filter(|(a, _)| a.to_string() == result.value).collect();
                let count = |s: Ipv4Addr| mine.iter().filter(|(_, c)| subs(c).contains(&s)).count() as u64;
                let all: Vec<Ipv4Addr> = (0..12).map(sub).filter(|&s| count(s) == mine.len() as u64).collect();
                let fit: Vec<Ipv4Addr> = result.fit_all.iter().map(|f| f.subscriber).collect();
                prop_assert_eq!(&fit, &all);
                for f in result.fit_all.iter().chain(&result.others) {
                    prop_assert_eq!(f.requests, count(f.subscriber));
                }
                let expected = match all.len() {
                    1 => GroupVerdict::Unique,
                    0 if mine.iter().all(|(_, c)| c.is_empty()) => GroupVerdict::None,
                    0 => GroupVerdict::Conflict,
                    _ => GroupVerdict::Ambiguous,
                };
                prop_assert_eq!(result.verdict, expected);
            }
        }

        /// Under any caps a verdict may be less precise, never wrong: `unique` names the
        /// one subscriber fitting all, `conflict` and `none` only when none does.
        #[test]
        fn caps_never_make_a_verdict_wrong(
            requests in prop::collection::vec(
                (0u8..3, prop::collection::vec(0u8..12, 0..8)), 1..40),
            max_groups in 1usize..4,
            max_subscribers in 1usize..6,
            max_tracked in 1usize..12,
        ) {
            let limits = GroupLimits { max_groups, max_subscribers, max_tracked };
            let mut groups = Groups::new(limits);
            for (line, (actor, candidates)) in requests.iter().enumerate() {
                groups.add_subscribers(Some(&actor.to_string()), line as u64 + 1, &subs(candidates));
            }
            for result in groups.results() {
                let mine: Vec<_> = requests.iter().filter(|(a, _)| a.to_string() == result.value).collect();
                let all: Vec<Ipv4Addr> = (0..12)
                    .map(sub)
                    .filter(|s| mine.iter().all(|(_, c)| subs(c).contains(s)))
                    .collect();
                match result.verdict {
                    GroupVerdict::Unique => {
                        prop_assert_eq!(all.len(), 1);
                        prop_assert_eq!(result.fit_all[0].subscriber, all[0]);
                    }
                    GroupVerdict::Ambiguous => prop_assert!(!all.is_empty()),
                    GroupVerdict::Conflict => prop_assert!(all.is_empty()),
                    GroupVerdict::None => {
                        prop_assert!(mine.iter().all(|(_, c)| c.is_empty()));
                    }
                    GroupVerdict::Undetermined => {}
                }
                for fit in &result.fit_all {
                    prop_assert!(all.contains(&fit.subscriber));
                }
            }
        }
    }
}
