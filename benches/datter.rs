//! `cargo bench --bench datter`: datter beside numpy, scikit-learn and matplotlib on the same
//! data, in one run, so the ratios hold on a noisy machine. Each part prints its own lines;
//! `P2_BENCH_ONLY=learn` (or `draw`, `report`) runs one part.
//!
//! - learn: PCA, k-means and DBSCAN beside scikit-learn's, with PCA's peak memory;
//! - draw: a 1,000,000-point scatter to PNG beside matplotlib's Agg;
//! - report: the `reward_report` pipeline over 100 bundles × 10,000 rows through a real
//!   coordinator, stager and worker, beside numpy + matplotlib doing the same work.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may stop at the first surprise

#[path = "datter/draw.rs"]
mod draw;
#[path = "datter/learn.rs"]
mod learn;
#[path = "datter/report.rs"]
mod report;
#[path = "../tests/system/support.rs"]
mod support;

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
    if wanted("report") {
        report::run();
    }
}
