//! hearth-store (being written).
