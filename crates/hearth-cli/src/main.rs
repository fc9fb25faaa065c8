//! The `hearth` binary (being written).
fn main() {}
