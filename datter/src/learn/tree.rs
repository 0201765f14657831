//! A k-d tree over the rows of a matrix, for radius and nearest-neighbour queries in
//! `O(log n)`-ish time and `O(n)` memory (DBSCAN's neighbourhoods, the k-distance).

use super::Matrix;

/// Points per leaf.
const LEAF: usize = 24;

struct Node {
    start: usize,
    end: usize,
    /// The children's node indices, or `None` for a leaf.
    children: Option<(usize, usize)>,
}

/// A k-d tree: the rows reordered so each node's are contiguous, with a bounding box per node.
pub(crate) struct KdTree {
    d: usize,
    /// The rows, in tree order, row-major.
    points: Vec<f64>,
    /// The original row of each point in tree order.
    index: Vec<usize>,
    nodes: Vec<Node>,
    /// Per node, `d` lower then `d` upper bounds.
    bounds: Vec<f64>,
}

impl KdTree {
    /// Builds the tree: each node splits its rows at the median of its widest dimension.
    pub(crate) fn new(x: Matrix<'_>) -> KdTree {
        let (n, d) = (x.rows(), x.cols());
        let mut index: Vec<usize> = (0..n).collect();
        let mut nodes = Vec::new();
        let mut bounds = Vec::new();
        let mut todo = vec![(0usize, n, usize::MAX, false)];
        while let Some((start, end, parent, right)) = todo.pop() {
            let id = nodes.len();
            nodes.push(Node {
                start,
                end,
                children: None,
            });
            if parent != usize::MAX {
                let p: &mut Node = &mut nodes[parent];
                p.children = Some(match p.children {
                    Some((l, _)) if right => (l, id),
                    Some((_, r)) => (id, r),
                    None if right => (usize::MAX, id),
                    None => (id, usize::MAX),
                });
            }
            let mut lo = vec![f64::INFINITY; d];
            let mut hi = vec![f64::NEG_INFINITY; d];
            for &i in &index[start..end] {
                for (j, &v) in x.row(i).iter().enumerate() {
                    lo[j] = lo[j].min(v);
                    hi[j] = hi[j].max(v);
                }
            }
            let wide = (0..d)
                .max_by(|&a, &b| (hi[a] - lo[a]).total_cmp(&(hi[b] - lo[b])))
                .unwrap_or(0);
            let spread = hi[wide] - lo[wide];
            bounds.extend_from_slice(&lo);
            bounds.extend_from_slice(&hi);
            if end - start <= LEAF || spread <= 0.0 {
                continue;
            }
            let mid = start + (end - start) / 2;
            index[start..end].select_nth_unstable_by(mid - start, |&a, &b| {
                x.row(a)[wide].total_cmp(&x.row(b)[wide])
            });
            todo.push((mid, end, id, true));
            todo.push((start, mid, id, false));
        }
        let mut points = Vec::with_capacity(n * d);
        for &i in &index {
            points.extend_from_slice(x.row(i));
        }
        KdTree {
            d,
            points,
            index,
            nodes,
            bounds,
        }
    }

    /// The squared distance from `q` to node `id`'s box.
    fn box_dist(&self, id: usize, q: &[f64]) -> f64 {
        let b = &self.bounds[id * 2 * self.d..(id + 1) * 2 * self.d];
        let (lo, hi) = b.split_at(self.d);
        q.iter()
            .zip(lo.iter().zip(hi))
            .map(|(&v, (&l, &h))| {
                let e = (l - v).max(v - h).max(0.0);
                e * e
            })
            .sum()
    }

    fn point_dist(&self, at: usize, q: &[f64]) -> f64 {
        self.points[at * self.d..(at + 1) * self.d]
            .iter()
            .zip(q)
            .map(|(a, b)| (a - b) * (a - b))
            .sum()
    }

    /// Calls `f` with the row of every point within squared distance `r2` of `q` (`q`'s own
    /// row included), until `f` returns false.
    pub(crate) fn within(&self, q: &[f64], r2: f64, mut f: impl FnMut(usize) -> bool) {
        let mut stack = vec![0usize];
        while let Some(id) = stack.pop() {
            if self.box_dist(id, q) > r2 {
                continue;
            }
            let node = &self.nodes[id];
            match node.children {
                Some((l, r)) => {
                    stack.push(r);
                    stack.push(l);
                }
                None => {
                    for at in node.start..node.end {
                        if self.point_dist(at, q) <= r2 && !f(self.index[at]) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// The squared distance from `q` to its `k`-th nearest point (`k ≥ 1`; a point at `q`
    /// counts), or infinity when there are fewer than `k` points.
    pub(crate) fn kth_dist(&self, q: &[f64], k: usize) -> f64 {
        // The k smallest so far, largest first.
        let mut best: Vec<f64> = Vec::with_capacity(k + 1);
        let worst = |best: &Vec<f64>| {
            if best.len() < k {
                f64::INFINITY
            } else {
                best[0]
            }
        };
        let mut stack = vec![(0usize, 0.0)];
        while let Some((id, bd)) = stack.pop() {
            if bd > worst(&best) {
                continue;
            }
            let node = &self.nodes[id];
            match node.children {
                Some((l, r)) => {
                    let (dl, dr) = (self.box_dist(l, q), self.box_dist(r, q));
                    // Nearer child last, so it is searched first.
                    if dl <= dr {
                        stack.push((r, dr));
                        stack.push((l, dl));
                    } else {
                        stack.push((l, dl));
                        stack.push((r, dr));
                    }
                }
                None => {
                    for at in node.start..node.end {
                        let dist = self.point_dist(at, q);
                        if dist < worst(&best) {
                            let pos = best.partition_point(|&b| b > dist);
                            best.insert(pos, dist);
                            if best.len() > k {
                                best.remove(0);
                            }
                        }
                    }
                }
            }
        }
        worst(&best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::Rng;

    #[test]
    fn queries_match_brute_force() {
        let mut rng = Rng::new(1);
        let data: Vec<f64> = (0..3000).map(|_| rng.uniform()).collect();
        let x = Matrix::new(&data, 3).unwrap();
        let t = KdTree::new(x);
        let d2 = |a: usize, b: usize| -> f64 {
            x.row(a)
                .iter()
                .zip(x.row(b))
                .map(|(p, q)| (p - q).powi(2))
                .sum()
        };
        for q in [0, 17, 999] {
            let mut got = Vec::new();
            t.within(x.row(q), 0.04, |i| {
                got.push(i);
                true
            });
            got.sort_unstable();
            let want: Vec<usize> = (0..1000).filter(|&i| d2(q, i) <= 0.04).collect();
            assert_eq!(got, want);
            let mut all: Vec<f64> = (0..1000).map(|i| d2(q, i)).collect();
            all.sort_by(f64::total_cmp);
            assert_eq!(t.kth_dist(x.row(q), 1), 0.0);
            assert_eq!(t.kth_dist(x.row(q), 5), all[4]);
        }
    }
}
