//! The events the packet path emits for the mapping log: sessions, port blocks, refusals.

use crate::engine::counters::Activity;
use crate::engine::event::{Event, EventKind, EventSink};
use crate::engine::ports::{BlockChange, Proto};
use crate::engine::refusals::Refusal;
use crate::engine::state::Mapping;
use crate::engine::{DropReason, Engine};

/// Who a new session belongs to, for limits and refusal events.
pub(super) struct FlowOwner {
    pub(super) proto: Proto,
    pub(super) inside_ip: u32,
    pub(super) inside_port: u16,
    pub(super) dest_port: u16,
}

impl<S: EventSink> Engine<S> {
    #[allow(clippy::too_many_arguments)] // the event's fields, named at the call
    pub(super) fn refuse(
        &mut self,
        kind: EventKind,
        reason: DropReason,
        owner: &FlowOwner,
        remote: u32,
        exhausted_public_ip: u32,
        now: u64,
    ) -> DropReason {
        let event = Event {
            kind,
            ts_ns: now,
            worker: self.worker,
            protocol: owner.proto.ip_protocol(),
            inside_ip: owner.inside_ip,
            inside_port: owner.inside_port,
            // The address whose ports ran out, when one did (0 when none was paired).
            public_ip: exhausted_public_ip,
            public_port: 0,
            dest_ip: remote,
            dest_port: owner.dest_port,
            block_first: 0,
            block_last: 0,
            last_active_ns: 0,
            refused: 1,
        };
        match self.refusals.offer(&event) {
            Refusal::Log if self.sink.has_room(1) => self.sink.emit(&event),
            Refusal::Log => {
                self.refusals.defer(&event);
                self.counters.count(Activity::RefusalsAggregated);
            }
            Refusal::Aggregated => self.counters.count(Activity::RefusalsAggregated),
        }
        reason
    }

    pub(super) fn emit_session(
        &mut self,
        kind: EventKind,
        m: &Mapping,
        (remote_ip, remote_port): (u32, u16),
        now: u64,
        last_active_ns: u64,
    ) {
        self.sink.emit(&Event {
            kind,
            ts_ns: now,
            worker: self.worker,
            protocol: m.proto.ip_protocol(),
            inside_ip: m.inside_ip,
            inside_port: m.inside_port,
            public_ip: m.public_ip,
            public_port: m.public_port,
            dest_ip: remote_ip,
            dest_port: remote_port,
            block_first: 0,
            block_last: 0,
            last_active_ns,
            refused: 0,
        });
    }

    pub(super) fn emit_block(&mut self, change: BlockChange, inside_ip: u32, now: u64) {
        self.sink.emit(&Event {
            kind: if change.allocated {
                EventKind::BlockAllocated
            } else {
                EventKind::BlockReleased
            },
            ts_ns: now,
            worker: self.worker,
            protocol: 0,
            inside_ip,
            inside_port: 0,
            public_ip: u32::from(change.public),
            public_port: 0,
            dest_ip: 0,
            dest_port: 0,
            block_first: change.first,
            block_last: change.last,
            last_active_ns: 0,
            refused: 0,
        });
    }
}
