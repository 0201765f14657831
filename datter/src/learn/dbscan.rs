//! DBSCAN, as scikit-learn's `DBSCAN(eps, min_samples)` with the euclidean metric: a row is
//! a core row when at least `min_samples` rows (itself included) lie within `eps` of it;
//! clusters are the core rows linked by chains of such neighbourhoods, with the non-core rows
//! within `eps` of one of their core rows; the rest is noise (`-1`).
//!
//! The labels are scikit-learn's exactly: clusters are numbered in the order of their first
//! core row, and a border row near two clusters goes to the one numbered first. Neighbours
//! are found with a k-d tree and are not stored: each core row's neighbourhood is queried when
//! the cluster reaches it, so memory is `O(n)` however dense the data.

use rayon::prelude::*;

use super::tree::KdTree;
use super::{LearnError, Matrix};

/// A DBSCAN clustering.
#[derive(Debug, Clone, PartialEq)]
pub struct Dbscan {
    /// Each row's cluster from 0, or -1 for noise.
    pub labels: Vec<i64>,
    /// Whether each row is a core row.
    pub core: Vec<bool>,
    /// How many clusters there are.
    pub clusters: usize,
}

/// Clusters `x` by density: `eps` is the neighbourhood's radius (more than 0), `min_samples`
/// the rows a neighbourhood needs (itself included, at least 1) for its row to be a core row.
pub fn dbscan(x: Matrix<'_>, eps: f64, min_samples: usize) -> Result<Dbscan, LearnError> {
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(LearnError::Invalid(format!(
            "DBSCAN's eps must be a finite number above 0, not {eps}"
        )));
    }
    if min_samples == 0 {
        return Err(LearnError::Invalid(
            "DBSCAN's min_samples must be at least 1".to_owned(),
        ));
    }
    x.check_finite()?;
    let n = x.rows();
    let tree = KdTree::new(x);
    let r2 = eps * eps;
    let is_core = |i: usize| {
        let mut found = 0;
        tree.within(x.row(i), r2, |_| {
            found += 1;
            found < min_samples
        });
        found >= min_samples
    };
    let core: Vec<bool> = if x.large() {
        (0..n)
            .into_par_iter()
            .with_min_len(256)
            .map(is_core)
            .collect()
    } else {
        (0..n).map(is_core).collect()
    };
    let mut labels = vec![-1i64; n];
    let mut cluster = 0i64;
    let mut stack = Vec::new();
    for start in 0..n {
        if labels[start] != -1 || !core[start] {
            continue;
        }
        labels[start] = cluster;
        stack.push(start);
        while let Some(i) = stack.pop() {
            tree.within(x.row(i), r2, |j| {
                if labels[j] == -1 {
                    labels[j] = cluster;
                    if core[j] {
                        stack.push(j);
                    }
                }
                true
            });
        }
        cluster += 1;
    }
    Ok(Dbscan {
        labels,
        core,
        clusters: usize::try_from(cluster).unwrap_or(0),
    })
}

/// A default `eps` for `dbscan(x, eps, min_samples)`, from the data's k-distances: each row's
/// distance to its `min_samples`-th nearest row (itself the first), over up to 10,000 rows
/// spread evenly through the data, sorted; `eps` is the knee of that curve, the point farthest
/// below the straight line from its first to its last value (the "kneedle" rule), where
/// distances stop growing slowly (rows in clusters) and start growing fast (noise).
pub fn default_eps(x: Matrix<'_>, min_samples: usize) -> Result<f64, LearnError> {
    x.check_finite()?;
    let n = x.rows();
    let k = min_samples.clamp(1, n);
    let tree = KdTree::new(x);
    let step = n.div_ceil(10_000).max(1);
    let sample: Vec<usize> = (0..n).step_by(step).collect();
    let one = |&i: &usize| tree.kth_dist(x.row(i), k).sqrt();
    let mut dist: Vec<f64> = if x.large() {
        sample.par_iter().map(one).collect()
    } else {
        sample.iter().map(one).collect()
    };
    dist.sort_by(f64::total_cmp);
    let (first, last) = (dist[0], dist[dist.len() - 1]);
    let mut eps = last;
    if last > first && dist.len() > 2 {
        #[allow(clippy::cast_precision_loss)]
        let m = (dist.len() - 1) as f64;
        let mut most = f64::NEG_INFINITY;
        for (i, &v) in dist.iter().enumerate() {
            #[allow(clippy::cast_precision_loss)]
            let below = i as f64 / m - (v - first) / (last - first);
            if below > most {
                most = below;
                eps = v;
            }
        }
    }
    // All rows at one place (or k-distances of 0): any positive radius joins them.
    Ok(if eps > 0.0 {
        eps
    } else {
        f64::MIN_POSITIVE.sqrt()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::Rng;

    #[test]
    fn two_groups_and_noise() {
        // A line of 5 points 1 apart, another far away, one lonely point; min_samples 3.
        let mut data = Vec::new();
        for i in 0..5 {
            data.extend([f64::from(i), 0.0]);
        }
        data.extend([100.0, 100.0]);
        for i in 0..4 {
            data.extend([50.0 + f64::from(i), 0.0]);
        }
        let x = Matrix::new(&data, 2).unwrap();
        let r = dbscan(x, 1.0, 3).unwrap();
        assert_eq!(r.labels, [0, 0, 0, 0, 0, -1, 1, 1, 1, 1]);
        // The ends of a line have 2 neighbours with themselves: border, not core.
        assert_eq!(r.core[..5], [false, true, true, true, false]);
        assert_eq!(r.clusters, 2);
        let r = dbscan(x, 1.0, 1).unwrap();
        assert_eq!((r.labels[5], r.labels[6], r.clusters), (1, 2, 3));
        assert!(dbscan(x, 0.0, 3).is_err() && dbscan(x, 1.0, 0).is_err());
    }

    #[test]
    fn the_default_eps_sits_between_in_cluster_and_noise_distances() {
        let mut rng = Rng::new(4);
        let mut data = Vec::new();
        for (cx, cy) in [(0.0, 0.0), (20.0, 0.0)] {
            for _ in 0..500 {
                data.extend([cx + rng.uniform(), cy + rng.uniform()]);
            }
        }
        for _ in 0..20 {
            data.extend([rng.uniform() * 100.0, 50.0 + rng.uniform() * 100.0]);
        }
        let x = Matrix::new(&data, 2).unwrap();
        let eps = default_eps(x, 5).unwrap();
        assert!(eps > 0.02 && eps < 5.0, "{eps}");
        let r = dbscan(x, eps, 5).unwrap();
        assert_eq!(r.clusters, 2, "eps {eps}");
        assert!(r.labels[..500].iter().filter(|&&l| l == 0).count() > 480);
        assert!(r.labels[1000..].iter().all(|&l| l == -1));
    }
}
