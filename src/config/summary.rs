//! The few lines `config check` and `run` print about a configuration.

use super::*;

impl FilteringMode {
    /// The spelling used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            FilteringMode::EndpointIndependent => "endpoint-independent",
            FilteringMode::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

impl LogVolume {
    /// The spelling used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            LogVolume::SessionsWithDestination => "sessions-with-destination",
            LogVolume::SessionsWithoutDestination => "sessions-without-destination",
            LogVolume::PortBlocks => "port-blocks",
            LogVolume::Deterministic => "deterministic",
        }
    }
}

impl Config {
    /// A few lines for an operator: what the pool holds, how ports are shared, who logs what.
    pub fn summary(&self) -> String {
        [
            self.interfaces_line(),
            self.workers_line(),
            self.pool_line(),
            self.ports_line(),
            self.allocation_line(),
            self.timeouts_line(),
            self.behaviour_line(),
            self.logging_line(),
            self.identity_line(),
        ]
        .join("\n")
    }

    fn interfaces_line(&self) -> String {
        format!(
            "interfaces: inside {}, outside {}",
            self.interfaces.inside, self.interfaces.outside
        )
    }

    fn workers_line(&self) -> String {
        let pinning = if self.workers.cores.is_empty() {
            "cores chosen automatically".to_owned()
        } else {
            let cores: Vec<String> = self.workers.cores.iter().map(usize::to_string).collect();
            format!("pinned to cores {}", cores.join(", "))
        };
        format!("workers: {} ({pinning})", self.workers.count)
    }

    fn pool_line(&self) -> String {
        format!(
            "pool: {} usable public addresses ({} excluded), {} subscriber addresses",
            self.pool.usable_public_addresses(),
            self.pool.exclude.len(),
            self.pool.subscriber_addresses()
        )
    }

    fn ports_line(&self) -> String {
        let per_address = u64::from(self.allocation.port_range_size());
        format!(
            "ports: {}-{}, {per_address} per public address, {} in total",
            self.allocation.port_min,
            self.allocation.port_max,
            per_address * self.pool.usable_public_addresses()
        )
    }

    fn allocation_line(&self) -> String {
        let range = self.allocation.port_range_size();
        let detail = match self.allocation.mode {
            AllocationMode::Dynamic => "dynamic (a random free port per mapping)".to_owned(),
            AllocationMode::PortBlock {
                block_size,
                max_blocks_per_subscriber,
            } => format!(
                "port-block ({block_size}-port blocks, {} per public address, at most {max_blocks_per_subscriber} per subscriber)",
                range / u32::from(block_size)
            ),
            AllocationMode::Deterministic {
                ports_per_subscriber,
            } => format!(
                "deterministic ({ports_per_subscriber} ports per subscriber, {} subscribers per public address)",
                range / u32::from(ports_per_subscriber)
            ),
        };
        let seed = match self.allocation.seed {
            Some(seed) => format!("seed {seed}"),
            None => "seed random at every start of `run` (0 in `replay`)".to_owned(),
        };
        format!("allocation: {detail}, {seed}")
    }

    fn timeouts_line(&self) -> String {
        let t = &self.timeouts;
        format!(
            "timeouts: tcp-established {}, tcp-transitory {}, udp {}, icmp {}, fragment {}",
            format_duration(t.tcp_established),
            format_duration(t.tcp_transitory),
            format_duration(t.udp),
            format_duration(t.icmp),
            format_duration(t.fragment)
        )
    }

    fn behaviour_line(&self) -> String {
        let hairpinning = if self.filtering.hairpinning {
            "on"
        } else {
            "off"
        };
        let ttl = match self.ttl.expired {
            TtlExpiredAction::Icmp => {
                format!("ICMP time-exceeded, at most {}/s", self.ttl.icmp_rate)
            }
            TtlExpiredAction::Drop => "dropped silently".to_owned(),
        };
        format!(
            "filtering: {}, hairpinning {hairpinning}; expired TTL: {ttl}",
            self.filtering.mode.name()
        )
    }

    fn identity_line(&self) -> String {
        let id = &self.identity;
        let mut sources = Vec::new();
        if let Some(r) = &id.radius {
            sources.push(format!(
                "RADIUS accounting on {} from {} NAS client(s)",
                r.listen,
                r.clients.len()
            ));
        }
        for (what, file) in [
            ("Kea leases", &id.kea_lease_file),
            ("dhcpd leases", &id.isc_lease_file),
        ] {
            if let Some(path) = file {
                sources.push(format!(
                    "{what} {} every {}",
                    path.display(),
                    format_duration(id.poll_interval)
                ));
            }
        }
        if sources.is_empty() {
            "identity: no sources (answers end at inside addresses)".to_owned()
        } else {
            format!("identity: {}", sources.join("; "))
        }
    }

    fn logging_line(&self) -> String {
        let destination = match &self.logging.dir {
            Some(dir) => format!("to {}", dir.display()),
            None => "no directory configured".to_owned(),
        };
        let retention = match self.logging.retention {
            Some(r) => format!("kept {}", format_duration(r)),
            None => "kept until deleted by hand".to_owned(),
        };
        format!(
            "logging: {destination}, volume {}, flush every {}, {retention}, when full: {}",
            self.logging.volume.name(),
            format_duration(self.logging.flush_interval),
            self.logging.on_backpressure.name()
        )
    }
}
