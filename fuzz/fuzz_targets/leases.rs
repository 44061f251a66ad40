//! Arbitrary bytes as a Kea lease file, a dhcpd.leases and a FreeRADIUS detail file, read
//! at once and in two pieces: never a panic, records well formed, the same either way.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tracenat::identity::lease::fuzz_bytes(data);
});
