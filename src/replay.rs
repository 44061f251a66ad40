//! Replay of pcap captures through the engine (being written).
