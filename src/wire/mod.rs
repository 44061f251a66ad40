//! Zero-copy packet views (being written).
