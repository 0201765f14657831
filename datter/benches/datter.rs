//! `cargo bench --bench datter`: datter beside numpy, scikit-learn and matplotlib on the same
//! data, in one run, so the ratios hold on a noisy machine. Each part prints its own lines;
//! `P2_BENCH_ONLY=learn` (or `draw`) runs one part.

#[path = "datter/draw.rs"]
mod draw;
#[path = "datter/learn.rs"]
mod learn;

fn main() {
    let only = std::env::var("P2_BENCH_ONLY").ok();
    let wanted = |part: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|p| p == part))
    };
    if wanted("learn") {
        learn::run();
    }
    if only.as_deref() == Some("probe") {
        draw::probe();
    }
    if wanted("draw") {
        draw::run();
    }
}
