//! Translation engine (being written).
