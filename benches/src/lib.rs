//! Benchmarks of Volley (see `benches/`): run with `cargo bench -p volley-benches`.

pub mod delay;
