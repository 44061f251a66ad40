//! NIC profiles (`hw/<name>.toml`, embedded) and the operator's set-up plan: the exact
//! `ethtool`, IRQ-affinity and busy-poll commands that make the NIC deliver each packet to
//! the queue of the worker that owns it.

use std::fmt::Write as _;

use super::steer::{self, HashFields, RssError, RssSpec, Side};

/// What tracenat needs to know about a NIC driver. See hw/README.md for each key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub driver: String,
    pub description: String,
    pub rss: bool,
    pub key_size: usize,
    pub key_settable: bool,
    pub indirection_size: usize,
    pub max_combined: u16,
    pub max_rss_queues: u16,
    pub hash_fields_settable: bool,
    pub tcp4_fields: Vec<String>,
    pub udp4_fields: Vec<String>,
    pub dst_only: bool,
    pub hfunc: Vec<String>,
    pub af_xdp_zero_copy: bool,
    pub irq_prefix: String,
    pub irq_suffix: String,
    pub setup: Vec<String>,
    pub quirks: Vec<String>,
}

/// The profiles built into the binary, by name.
pub const BUILTIN: [(&str, &str); 5] = [
    ("mlx5", include_str!("../../hw/mlx5.toml")),
    ("ice", include_str!("../../hw/ice.toml")),
    ("i40e", include_str!("../../hw/i40e.toml")),
    ("ixgbe", include_str!("../../hw/ixgbe.toml")),
    ("veth", include_str!("../../hw/veth.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("unknown NIC profile {0:?} (known: mlx5, ice, i40e, ixgbe, veth)")]
    UnknownProfile(String),
    #[error("profile {name}: {source}")]
    Parse {
        name: String,
        source: toml::de::Error,
    },
    #[error("profile {0}: the NIC has no RSS, nothing to steer (handoff rings carry every packet)")]
    NoRss(String),
    #[error("profile {profile}: {workers} workers but RSS reaches at most {max} queues")]
    TooManyWorkers {
        profile: String,
        workers: u16,
        max: u16,
    },
    #[error("profile {0}: the RSS key or hash fields cannot be set, so ports cannot be aligned")]
    NotSettable(String),
    #[error("an ethtool hkey must be bytes in hex separated by colons: {0:?}")]
    BadKey(String),
    #[error(transparent)]
    Rss(#[from] RssError),
}

impl Profile {
    /// Parses a profile from TOML text.
    pub fn from_toml(name: &str, text: &str) -> Result<Profile, PlanError> {
        toml::from_str(text).map_err(|source| PlanError::Parse {
            name: name.to_string(),
            source,
        })
    }

    /// One of the built-in profiles.
    pub fn builtin(name: &str) -> Result<Profile, PlanError> {
        let (_, text) = BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| PlanError::UnknownProfile(name.to_string()))?;
        Profile::from_toml(name, text)
    }

    /// Names of the built-in profiles.
    pub fn names() -> impl Iterator<Item = &'static str> {
        BUILTIN.iter().map(|(n, _)| *n)
    }

    fn accepts_four_tuple(&self) -> bool {
        let f = HashFields::FourTuple.ethtool_flags();
        self.tcp4_fields.iter().any(|x| x == f) && self.udp4_fields.iter().any(|x| x == f)
    }
}

/// The RSS configuration of both NIC ports for a worker count: keys, hash fields and
/// indirection tables. The dataplane builds its partitions from [`Design::outside`] and
/// steers subscribers by [`Design::inside`]; the plan prints the same keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Design {
    pub workers: u16,
    /// Low hash bits the indirection reads.
    pub queue_bits: u32,
    /// Aligned blocks of 2^block_bits public ports share a queue.
    pub block_bits: u32,
    pub seed: u64,
    pub inside: RssSpec,
    pub outside: RssSpec,
}

impl Design {
    /// Seed of the keys `plan` prints. Secrecy does not matter much here: the engineered
    /// keys take the remote end out of the queue choice, so no remote can aim its packets
    /// at one queue beyond choosing which public port it targets.
    pub const DEFAULT_SEED: u64 = 0x7472_6163_656e_6174;
    /// Preferred port-block alignment (256 ports), reduced when the queue needs more bits.
    pub const DEFAULT_BLOCK_BITS: u32 = 8;

    /// Keys and tables for `workers` queues on `profile` with `ethtool -X ... equal
    /// workers`. Block bits default to [`Self::DEFAULT_BLOCK_BITS`], less where the
    /// indirection reads too many hash bits.
    pub fn new(
        profile: &Profile,
        workers: u16,
        seed: u64,
        block_bits: Option<u32>,
    ) -> Result<Design, PlanError> {
        if !profile.rss {
            return Err(PlanError::NoRss(profile.name.clone()));
        }
        if !profile.key_settable || !profile.hash_fields_settable && !profile.accepts_four_tuple() {
            return Err(PlanError::NotSettable(profile.name.clone()));
        }
        if workers == 0 {
            return Err(RssError::NoWorkers.into());
        }
        let max = profile.max_rss_queues.min(profile.max_combined);
        if workers > max {
            return Err(PlanError::TooManyWorkers {
                profile: profile.name.clone(),
                workers,
                max,
            });
        }
        if !profile.indirection_size.is_power_of_two() {
            return Err(RssError::TableSize(profile.indirection_size).into());
        }
        let fields = HashFields::FourTuple;
        let probe = RssSpec::equal(
            vec![0; profile.key_size],
            fields,
            profile.indirection_size,
            workers,
        )?;
        let queue_bits = probe.queue_bits();
        let block_bits =
            block_bits.unwrap_or(Self::DEFAULT_BLOCK_BITS.min(16u32.saturating_sub(queue_bits)));
        let key =
            |side| steer::engineered_key(side, seed, queue_bits, block_bits, profile.key_size);
        let spec = |key| RssSpec::new(key, fields, probe.indirection.clone());
        Ok(Design {
            workers,
            queue_bits,
            block_bits,
            seed,
            inside: spec(key(Side::Inside)?)?,
            outside: spec(key(Side::Outside)?)?,
        })
    }
}

/// `6d:5a:56:...`, the form `ethtool -X <if> hkey` takes and `ethtool -x` prints.
pub fn format_hkey(key: &[u8]) -> String {
    key.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Inverse of [`format_hkey`].
pub fn parse_hkey(text: &str) -> Result<Vec<u8>, PlanError> {
    text.trim()
        .split(':')
        .map(|h| {
            (h.len() == 2)
                .then(|| u8::from_str_radix(h, 16).ok())
                .flatten()
                .ok_or_else(|| PlanError::BadKey(text.to_string()))
        })
        .collect()
}

/// The commands an operator runs to set both NIC ports up for `workers` workers pinned to
/// cores `first_core ..`, with the default seed and block alignment. A profile without
/// RSS gets an explanation instead; an impossible request, the reason as a comment.
pub fn plan(
    profile: &Profile,
    workers: u16,
    inside_if: &str,
    outside_if: &str,
    first_core: usize,
) -> String {
    if !profile.rss {
        return plan_without_rss(profile, workers, inside_if, outside_if, first_core);
    }
    match Design::new(profile, workers, Design::DEFAULT_SEED, None) {
        Ok(design) => plan_design(profile, &design, inside_if, outside_if, first_core),
        Err(e) => format!("# cannot plan: {e}\n"),
    }
}

/// [`plan`] for a given design (seed and block alignment chosen by the caller).
pub fn plan_design(
    profile: &Profile,
    design: &Design,
    inside_if: &str,
    outside_if: &str,
    first_core: usize,
) -> String {
    let n = design.workers;
    let last_core = first_core + n as usize - 1;
    let sides = [(inside_if, &design.inside), (outside_if, &design.outside)];
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "# tracenat RSS plan: {} ({}), {n} workers on cores {first_core}-{last_core}",
        profile.name, profile.description
    );
    let _ = writeln!(
        w,
        "# inside = {inside_if}, outside = {outside_if}; run as root."
    );
    let _ = writeln!(
        w,
        "# Outside: a return packet's queue depends only on the public address and port bits \
         {}..15 (blocks of {} ports share a queue), never on the remote end.",
        design.block_bits,
        1u32 << design.block_bits
    );
    let _ = writeln!(
        w,
        "# Inside: an outbound packet's queue depends only on the subscriber address."
    );
    let _ = writeln!(
        w,
        "# The two ports need different keys: one key cannot make the source address matter \
         inside and not matter outside."
    );
    for q in &profile.quirks {
        let _ = writeln!(w, "# note: {q}");
    }

    let _ = writeln!(
        w,
        "\n# 1. one combined channel (RX/TX queue pair) per worker"
    );
    for (dev, _) in sides {
        let _ = writeln!(w, "ethtool -L {dev} combined {n}");
    }
    if !profile.setup.is_empty() {
        let _ = writeln!(
            w,
            "\n# 2. offloads and steering features that would override RSS"
        );
        for (dev, _) in sides {
            for cmd in &profile.setup {
                let _ = writeln!(w, "{}", cmd.replace("{if}", dev));
            }
        }
    }
    let _ = writeln!(
        w,
        "\n# 3. hash source address, destination address, source port, destination port"
    );
    for (dev, spec) in sides {
        for proto in ["tcp4", "udp4"] {
            let _ = writeln!(
                w,
                "ethtool -N {dev} rx-flow-hash {proto} {}",
                spec.fields.ethtool_flags()
            );
        }
    }
    let _ = writeln!(
        w,
        "\n# 4. engineered Toeplitz keys ({} bytes) and an indirection table of {} entries, \
         entry i -> queue i % {n}",
        profile.key_size,
        design.outside.indirection.len()
    );
    for (dev, spec) in sides {
        let _ = writeln!(
            w,
            "ethtool -X {dev} hkey {} equal {n} hfunc toeplitz",
            format_hkey(&spec.key)
        );
    }
    let _ = writeln!(
        w,
        "\n# 5. check: the keys and tables above, and sdfn for tcp4/udp4"
    );
    for (dev, _) in sides {
        let _ = writeln!(w, "ethtool -x {dev}");
        let _ = writeln!(w, "ethtool -n {dev} rx-flow-hash tcp4");
    }
    let _ = writeln!(
        w,
        "\n# 6. IRQ affinity: queue q of both ports -> core {first_core} + q \
         (irqbalance would undo it)"
    );
    let _ = writeln!(w, "systemctl stop irqbalance 2>/dev/null || true");
    for (dev, _) in sides {
        irq_loop(w, profile, dev, n, first_core);
    }
    let _ = writeln!(
        w,
        "\n# 7. busy polling (AF_XDP sockets also set SO_PREFER_BUSY_POLL and SO_BUSY_POLL_BUDGET)"
    );
    let _ = writeln!(w, "sysctl -w net.core.busy_poll=50");
    let _ = writeln!(w, "sysctl -w net.core.busy_read=50");
    for (dev, _) in sides {
        let _ = writeln!(w, "echo 2 > /sys/class/net/{dev}/napi_defer_hard_irqs");
        let _ = writeln!(w, "echo 200000 > /sys/class/net/{dev}/gro_flush_timeout");
    }
    dedicated_cores(w, first_core, last_core);
    if !profile.af_xdp_zero_copy {
        let _ = writeln!(
            w,
            "\n# note: {} has no AF_XDP zero-copy; sockets run in copy mode",
            profile.name
        );
    }
    s
}

/// How to give each worker its core: with the cores isolated, `dataplane.idle-backoff =
/// "auto"` (the default) makes the workers spin there instead of sleeping between frames.
fn dedicated_cores(w: &mut String, first_core: usize, last_core: usize) {
    let cores: Vec<String> = (first_core..=last_core).map(|c| c.to_string()).collect();
    let _ = writeln!(
        w,
        "\n# 8. optional, the lowest latency: a core of its own per worker. Boot with\n\
         #   isolcpus={first_core}-{last_core} nohz_full={first_core}-{last_core}\n\
         # and set workers.cores = [{}]: with dataplane.idle-backoff = \"auto\" (the default)\n\
         # the workers then spin on those cores instead of sleeping between frames.",
        cores.join(", ")
    );
}

/// The shell loop that pins queue `q`'s interrupt of `dev` to core `first_core + q`: IRQ
/// numbers are only known at run time, from /proc/interrupts.
fn irq_loop(w: &mut String, profile: &Profile, dev: &str, workers: u16, first_core: usize) {
    let needs_pci = profile.irq_prefix.contains("{pci}") || profile.irq_suffix.contains("{pci}");
    let subst = |t: &str| t.replace("{if}", dev).replace("{pci}", "$pci");
    let (prefix, suffix) = (subst(&profile.irq_prefix), subst(&profile.irq_suffix));
    let _ = writeln!(w, "# {dev}: queue q -> core {first_core} + q");
    if needs_pci {
        let _ = writeln!(
            w,
            "pci=$(basename \"$(readlink -f /sys/class/net/{dev}/device)\")"
        );
    }
    let _ = writeln!(
        w,
        "grep -E \"[[:space:]]{prefix}[0-9]+{suffix}\\$\" /proc/interrupts | while read -r irq rest; do\n\
         \x20 q=$(printf '%s\\n' \"$rest\" | sed -nE \"s/.*[[:space:]]{prefix}([0-9]+){suffix}\\$/\\1/p\")\n\
         \x20 if [ -n \"$q\" ] && [ \"$q\" -lt {workers} ]; then\n\
         \x20   echo $(({first_core} + q)) > /proc/irq/${{irq%:}}/smp_affinity_list\n\
         \x20 fi\n\
         done"
    );
}

fn plan_without_rss(
    profile: &Profile,
    workers: u16,
    inside_if: &str,
    outside_if: &str,
    first_core: usize,
) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "# tracenat plan: {} ({}), {workers} workers from core {first_core}",
        profile.name, profile.description
    );
    let _ = writeln!(
        w,
        "# {} has no receive-side scaling: the queue a packet arrives on is not chosen from its \
         headers, so no key or hash setting can make a return packet arrive at the worker that \
         owns its public port, nor an outbound packet at its subscriber's worker. tracenat runs \
         with handoff rings instead: each worker takes what arrives on its queue and forwards \
         packets it does not own to their owner over a lock-free ring (counted as handoffs).",
        profile.name
    );
    for q in &profile.quirks {
        let _ = writeln!(w, "# note: {q}");
    }
    let _ = writeln!(
        w,
        "\n# queues: one per worker, fixed when the pair is created"
    );
    let _ = writeln!(
        w,
        "#   ip link add {inside_if} numtxqueues {workers} numrxqueues {workers} type veth peer ..."
    );
    for dev in [inside_if, outside_if] {
        let _ = writeln!(w, "ethtool -L {dev} combined {workers} 2>/dev/null || true");
    }
    let _ = writeln!(w, "\n# busy polling");
    let _ = writeln!(w, "sysctl -w net.core.busy_poll=50");
    let _ = writeln!(w, "sysctl -w net.core.busy_read=50");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rss::steer::{Field, owner_of_public, subscriber_queue};
    use std::net::Ipv4Addr;

    fn hkey_of<'a>(plan: &'a str, dev: &str) -> &'a str {
        let prefix = format!("ethtool -X {dev} hkey ");
        let line = plan
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no hkey line for {dev} in\n{plan}"));
        line[prefix.len()..].split(' ').next().unwrap()
    }

    #[test]
    fn every_builtin_profile_loads() {
        for name in Profile::names() {
            let p = Profile::builtin(name).unwrap();
            assert_eq!(p.name, name);
            if p.rss {
                assert!([40, 52].contains(&p.key_size), "{name}");
                assert!(p.indirection_size.is_power_of_two(), "{name}");
                assert!(p.tcp4_fields.iter().any(|f| f == "sdfn"), "{name}");
            }
        }
        assert_eq!(Profile::builtin("ixgbe").unwrap().indirection_size, 128);
        assert_eq!(Profile::builtin("ixgbe").unwrap().key_size, 40);
        assert!(!Profile::builtin("ixgbe").unwrap().dst_only);
        assert_eq!(Profile::builtin("ice").unwrap().key_size, 52);
        assert!(!Profile::builtin("veth").unwrap().rss);
        assert!(matches!(
            Profile::builtin("e1000"),
            Err(PlanError::UnknownProfile(_))
        ));
        assert!(matches!(
            Profile::from_toml("x", "name = \"x\""),
            Err(PlanError::Parse { .. })
        ));
    }

    #[test]
    fn mlx5_plan_for_four_workers() {
        let p = Profile::builtin("mlx5").unwrap();
        let plan = plan(&p, 4, "eth1", "eth0", 2);
        for dev in ["eth0", "eth1"] {
            for line in [
                format!("ethtool -L {dev} combined 4"),
                format!("ethtool -N {dev} rx-flow-hash tcp4 sdfn"),
                format!("ethtool -N {dev} rx-flow-hash udp4 sdfn"),
                format!("ethtool -K {dev} lro off"),
                format!("echo 2 > /sys/class/net/{dev}/napi_defer_hard_irqs"),
                format!("echo 200000 > /sys/class/net/{dev}/gro_flush_timeout"),
                format!("pci=$(basename \"$(readlink -f /sys/class/net/{dev}/device)\")"),
            ] {
                assert!(
                    plan.lines().any(|l| l == line),
                    "missing {line:?} in\n{plan}"
                );
            }
            let x = plan
                .lines()
                .find(|l| l.starts_with(&format!("ethtool -X {dev} hkey ")))
                .unwrap();
            assert!(x.ends_with(" equal 4 hfunc toeplitz"), "{x}");
        }
        assert!(plan.contains("sysctl -w net.core.busy_poll=50"));
        assert!(plan.contains("sysctl -w net.core.busy_read=50"));
        assert!(plan.contains("mlx5_comp([0-9]+)@pci:$pci"), "{plan}");
        assert!(plan.contains("smp_affinity_list"));
        assert!(plan.contains("echo $((2 + q))"));
        assert!(plan.contains("#   isolcpus=2-5 nohz_full=2-5"), "{plan}");
        assert!(plan.contains("[ \"$q\" -lt 4 ]; then"));

        // The printed keys, parsed back, are the engineered keys, and they align.
        let design = Design::new(&p, 4, Design::DEFAULT_SEED, None).unwrap();
        let inside = parse_hkey(hkey_of(&plan, "eth1")).unwrap();
        let outside = parse_hkey(hkey_of(&plan, "eth0")).unwrap();
        assert_eq!(inside, design.inside.key);
        assert_eq!(outside, design.outside.key);
        assert_eq!(outside.len(), 40);
        let expected_outside =
            steer::engineered_key(Side::Outside, Design::DEFAULT_SEED, 2, 8, 40).unwrap();
        assert_eq!(outside, expected_outside);
        let spec = RssSpec::equal(outside, HashFields::FourTuple, 256, 4).unwrap();
        assert!(spec.is_outside_aligned());
        assert!(spec.block_bits() >= 8);
        let ispec = RssSpec::equal(inside, HashFields::FourTuple, 256, 4).unwrap();
        assert!(ispec.is_inside_aligned() && ispec.depends_on(Field::SrcIp));
        // Ordering: channels before the table (changing channels may reset it).
        let l = plan.find("ethtool -L eth0").unwrap();
        let x = plan.find("ethtool -X eth0").unwrap();
        assert!(l < x);
    }

    #[test]
    fn irq_loop_finds_queues_in_proc_interrupts() {
        // Runs the printed loop's matching against a fake /proc/interrupts line set, with
        // the same regular expressions, in Rust terms: prefix, digits, suffix at line end.
        let p = Profile::builtin("ice").unwrap();
        let plan = plan(&p, 2, "ens1f1", "ens1f0", 4);
        assert!(
            plan.contains("grep -E \"[[:space:]]ice-ens1f0-TxRx-[0-9]+\\$\" /proc/interrupts"),
            "{plan}"
        );
        assert!(plan.contains("ethtool -X ens1f0 hkey "));
        let key = parse_hkey(hkey_of(&plan, "ens1f0")).unwrap();
        assert_eq!(key.len(), 52);
        assert!(!plan.contains("pci="));
    }

    /// Runs the printed IRQ loop with bash against a fake /proc/interrupts and /proc/irq.
    fn run_irq_loop(
        profile: &str,
        dev: &str,
        interrupts: &str,
        workers: u16,
    ) -> Vec<(u32, String)> {
        let p = Profile::builtin(profile).unwrap();
        let text = plan(&p, workers, dev, "unused0", 3);
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("interrupts");
        std::fs::write(&fake, interrupts).unwrap();
        let irq_dir = dir.path().join("irq");
        let mut script = String::from("set -e\n");
        let start = format!("# {dev}: queue q");
        let lines = text.lines().skip_while(|l| !l.starts_with(&start)).skip(1);
        for line in lines.take_while(|l| !l.is_empty() && !l.starts_with('#')) {
            if line.starts_with("pci=") && line.contains(&format!("/net/{dev}/")) {
                script.push_str("pci=0000:3b:00.0\n");
            } else if !line.starts_with("pci=") && !line.starts_with("systemctl") {
                script.push_str(
                    &line
                        .replace("/proc/interrupts", fake.to_str().unwrap())
                        .replace("/proc/irq/", &format!("{}/", irq_dir.to_str().unwrap())),
                );
                script.push('\n');
            }
        }
        for irq in 1..200 {
            std::fs::create_dir_all(irq_dir.join(irq.to_string())).unwrap();
        }
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pinned = Vec::new();
        for irq in 1..200u32 {
            if let Ok(v) =
                std::fs::read_to_string(irq_dir.join(irq.to_string()).join("smp_affinity_list"))
            {
                pinned.push((irq, v.trim().to_string()));
            }
        }
        pinned
    }

    #[test]
    fn printed_irq_loops_pin_the_right_interrupts() {
        let mlx5 = "           CPU0       CPU1\n\
            \x20 98:          0          0  IR-PCI-MSIX-0000:3b:00.0    0-edge      mlx5_async0@pci:0000:3b:00.0\n\
            \x20 99:         12          0  IR-PCI-MSIX-0000:3b:00.0    1-edge      mlx5_comp0@pci:0000:3b:00.0\n\
            \x20100:          3          0  IR-PCI-MSIX-0000:3b:00.0    2-edge      mlx5_comp1@pci:0000:3b:00.0\n\
            \x20101:          3          0  IR-PCI-MSIX-0000:3b:00.0    3-edge      mlx5_comp2@pci:0000:3b:00.0\n\
            \x20120:          3          0  IR-PCI-MSIX-0000:3b:00.1    2-edge      mlx5_comp1@pci:0000:3b:00.1\n";
        assert_eq!(
            run_irq_loop("mlx5", "eth1", mlx5, 2),
            vec![(99, "3".to_string()), (100, "4".to_string())]
        );
        let ixgbe = "            CPU0\n\
            \x20 40:   5  IR-PCI-MSI  eth1-TxRx-0\n\
            \x20 41:   5  IR-PCI-MSI  eth1-TxRx-1\n\
            \x20 42:   5  IR-PCI-MSI  veth1-TxRx-1\n\
            \x20 43:   5  IR-PCI-MSI  eth1-TxRx-10\n\
            \x20 44:   5  IR-PCI-MSI  eth1\n";
        assert_eq!(
            run_irq_loop("ixgbe", "eth1", ixgbe, 4),
            vec![(40, "3".to_string()), (41, "4".to_string())]
        );
    }

    #[test]
    fn intel_plans_disable_flow_director_atr() {
        let i40e = plan(&Profile::builtin("i40e").unwrap(), 4, "a", "b", 0);
        assert!(i40e.contains("ethtool --set-priv-flags b flow-director-atr off"));
        let ixgbe = plan(&Profile::builtin("ixgbe").unwrap(), 4, "a", "b", 0);
        assert!(ixgbe.contains("ethtool -K b ntuple on"));
        assert!(ixgbe.contains("grep -E \"[[:space:]]b-TxRx-[0-9]+\\$\""));
    }

    #[test]
    fn impossible_requests_are_explained() {
        let ixgbe = Profile::builtin("ixgbe").unwrap();
        let text = plan(&ixgbe, 32, "a", "b", 0);
        assert!(
            text.starts_with("# cannot plan:") && text.contains("at most 16"),
            "{text}"
        );
        assert!(!text.contains("ethtool"));
        let veth = plan(&Profile::builtin("veth").unwrap(), 4, "v-in", "v-out", 1);
        assert!(veth.contains("handoff ring"), "{veth}");
        assert!(!veth.contains("ethtool -X") && !veth.contains("rx-flow-hash"));
        assert!(matches!(
            Design::new(&Profile::builtin("veth").unwrap(), 4, 0, None),
            Err(PlanError::NoRss(_))
        ));
    }

    #[test]
    fn non_power_of_two_workers_read_the_whole_table() {
        let p = Profile::builtin("i40e").unwrap();
        let d = Design::new(&p, 6, 1, None).unwrap();
        assert_eq!(d.queue_bits, 9);
        assert_eq!(d.block_bits, 7);
        assert!(d.outside.is_outside_aligned() && d.inside.is_inside_aligned());
        let ice = Design::new(&Profile::builtin("ice").unwrap(), 6, 1, None).unwrap();
        assert_eq!((ice.queue_bits, ice.block_bits), (11, 5));
        assert!(matches!(
            Design::new(&Profile::builtin("ice").unwrap(), 6, 1, Some(8)),
            Err(PlanError::Rss(RssError::TooManyBits { .. }))
        ));
    }

    #[test]
    fn design_steers_like_the_plan_says() {
        let p = Profile::builtin("mlx5").unwrap();
        let d = Design::new(&p, 8, 42, None).unwrap();
        let pool: Vec<Ipv4Addr> = (1..5).map(|i| Ipv4Addr::new(198, 51, 100, i)).collect();
        let parts = steer::partitions(&d.outside, &pool, 1024, 65535, 8).unwrap();
        for (w, part) in parts.iter().enumerate() {
            for (ip, ports) in part.addrs() {
                for port in ports.iter().step_by(101) {
                    let q = owner_of_public(&d.outside, ip, port, Ipv4Addr::new(9, 9, 9, 9), 53);
                    assert_eq!(q as usize, w);
                }
            }
        }
        let s = Ipv4Addr::new(100, 64, 3, 3);
        assert_eq!(
            subscriber_queue(&d.inside, s, Ipv4Addr::new(1, 2, 3, 4), 1, 2),
            subscriber_queue(&d.inside, s, Ipv4Addr::new(4, 3, 2, 1), 3, 4)
        );
    }

    #[test]
    fn hkey_round_trip_and_errors() {
        let key = steer::engineered_key(Side::Inside, 5, 3, 0, 52).unwrap();
        assert_eq!(parse_hkey(&format_hkey(&key)).unwrap(), key);
        assert_eq!(format_hkey(&[0x6d, 0x5a, 0x0e]), "6d:5a:0e");
        assert!(parse_hkey("6d:5").is_err());
        assert!(parse_hkey("6d:zz").is_err());
        assert!(parse_hkey("").is_err());
    }
}
