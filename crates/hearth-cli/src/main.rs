//! The `hearth` binary (being written).

mod bench;

fn main() {
    let _ = bench::run;
}
