//! What each worker does when no frame is waiting (`dataplane.idle-backoff`). Spinning
//! answers fastest but keeps a core busy; on a core shared with other work it takes the
//! CPU that work needs and costs more latency than it saves. So by default (`"auto"`) a
//! worker spins only on a CPU the kernel keeps for chosen tasks (`isolcpus=`,
//! `nohz_full=`): an operator who isolated the dataplane's cores gets polling, everyone
//! else a worker that sleeps in poll(2) until traffic wakes it.

use std::collections::BTreeSet;
use std::time::Duration;

use super::worker::Idle;
use crate::config::IdleBackoff;

/// The kernel's lists of CPUs kept for chosen tasks: isolated from the scheduler's
/// balancing, and without the periodic tick.
const KEPT_CPU_LISTS: [&str; 2] = [
    "/sys/devices/system/cpu/isolated",
    "/sys/devices/system/cpu/nohz_full",
];

/// Beyond any machine's CPU count: a range wider than this in a list is not believed.
const MOST_CPUS: usize = 1 << 16;

/// The CPUs the kernel keeps for chosen tasks. A list that cannot be read or parsed counts
/// as empty, so workers sleep: the choice that harms nobody on shared cores.
pub fn kept_cpus() -> BTreeSet<usize> {
    KEPT_CPU_LISTS
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .filter_map(|text| parse_cpu_list(&text))
        .flatten()
        .collect()
}

/// The kernel's CPU list format: "0-3,8,10-11"; empty, or "(null)" on older kernels, for
/// none. `None` if it is not that.
pub fn parse_cpu_list(text: &str) -> Option<BTreeSet<usize>> {
    let text = text.trim();
    let mut cpus = BTreeSet::new();
    if text.is_empty() || text == "(null)" {
        return Some(cpus);
    }
    for part in text.split(',') {
        let (first, last): (usize, usize) = match part.split_once('-') {
            Some((first, last)) => (first.trim().parse().ok()?, last.trim().parse().ok()?),
            None => {
                let cpu = part.trim().parse().ok()?;
                (cpu, cpu)
            }
        };
        if first > last || last >= MOST_CPUS {
            return None;
        }
        cpus.extend(first..=last);
    }
    Some(cpus)
}

/// What a worker pinned to `cpu` (`None`: not pinned) does when idle.
pub fn policy(
    backoff: IdleBackoff,
    idle_spin: Duration,
    cpu: Option<usize>,
    kept: &BTreeSet<usize>,
) -> Idle {
    let sleep = Idle::SleepAfterNs(u64::try_from(idle_spin.as_nanos()).unwrap_or(u64::MAX));
    match backoff {
        IdleBackoff::Sleep => sleep,
        IdleBackoff::Spin => Idle::Spin,
        IdleBackoff::Auto if cpu.is_some_and(|cpu| kept.contains(&cpu)) => Idle::Spin,
        IdleBackoff::Auto => sleep,
    }
}

/// One line for the operator at start: which workers spin and which sleep, and why.
/// `workers[w]` is worker w's CPU and policy.
pub fn describe(
    backoff: IdleBackoff,
    workers: &[(Option<usize>, Idle)],
    kept: &BTreeSet<usize>,
) -> String {
    let list = |spins: bool| {
        let named = workers
            .iter()
            .enumerate()
            .filter(|(_, (_, idle))| (*idle == Idle::Spin) == spins)
            .map(|(w, (cpu, _))| match cpu {
                Some(cpu) => format!("{w} (CPU {cpu})"),
                None => format!("{w} (not pinned)"),
            });
        or_none(named, ", ")
    };
    let why = match backoff {
        IdleBackoff::Sleep => "dataplane.idle-backoff = true".to_owned(),
        IdleBackoff::Spin => "dataplane.idle-backoff = false".to_owned(),
        IdleBackoff::Auto => format!(
            "dataplane.idle-backoff = \"auto\": spin on CPUs the kernel keeps for chosen tasks (isolcpus=, nohz_full=), here {}",
            or_none(kept.iter().map(usize::to_string), ",")
        ),
    };
    format!(
        "when idle, workers spin: {}; sleep in poll(2): {} ({why})",
        list(true),
        list(false)
    )
}

/// `items` joined by `separator`, or "none".
fn or_none(items: impl Iterator<Item = String>, separator: &str) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(separator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cpus: &[usize]) -> BTreeSet<usize> {
        cpus.iter().copied().collect()
    }

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("2-5,8\n"), Some(set(&[2, 3, 4, 5, 8])));
        assert_eq!(parse_cpu_list("0"), Some(set(&[0])));
        assert_eq!(parse_cpu_list("\n"), Some(set(&[])));
        assert_eq!(parse_cpu_list("(null)\n"), Some(set(&[])));
        for junk in ["5-2", "a", "1,,2", "-3", "1-", "0-4294967295", "1-2-3"] {
            assert_eq!(parse_cpu_list(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn auto_spins_only_on_cpus_the_kernel_keeps() {
        let kept = set(&[2, 3]);
        let spin = Duration::from_micros(50);
        let sleep = Idle::SleepAfterNs(50_000);
        let auto = |cpu| policy(IdleBackoff::Auto, spin, cpu, &kept);
        assert_eq!(auto(Some(2)), Idle::Spin);
        assert_eq!(auto(Some(1)), sleep);
        assert_eq!(auto(None), sleep);
        assert_eq!(policy(IdleBackoff::Auto, spin, Some(2), &set(&[])), sleep);
        assert_eq!(policy(IdleBackoff::Sleep, spin, Some(2), &kept), sleep);
        assert_eq!(policy(IdleBackoff::Spin, spin, Some(1), &kept), Idle::Spin);
    }

    #[test]
    fn the_start_up_line_names_each_worker_and_the_reason() {
        let kept = set(&[3]);
        let workers = [(Some(2), Idle::SleepAfterNs(0)), (Some(3), Idle::Spin)];
        assert_eq!(
            describe(IdleBackoff::Auto, &workers, &kept),
            "when idle, workers spin: 1 (CPU 3); sleep in poll(2): 0 (CPU 2) \
             (dataplane.idle-backoff = \"auto\": spin on CPUs the kernel keeps for chosen tasks \
             (isolcpus=, nohz_full=), here 3)"
        );
        let unpinned = [(None, Idle::SleepAfterNs(0))];
        assert_eq!(
            describe(IdleBackoff::Sleep, &unpinned, &set(&[])),
            "when idle, workers spin: none; sleep in poll(2): 0 (not pinned) (dataplane.idle-backoff = true)"
        );
    }
}
