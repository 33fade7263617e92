//! twos: weighted random twos choice (`ip_vs_twos.c`). Two servers are
//! drawn at random in proportion to their weights; the one with the lower
//! overhead/weight wins. A fixed-seed xorshift generator makes the same
//! configuration give the same picks everywhere.
//!
//! A draw is O(1): an alias table (Walker/Vose, in integers, so exact)
//! over the servers that are weighted, healthy and not removed, rebuilt
//! only when one of those changes (a reload or a health check). A drawn
//! server over its connection threshold is drawn again (rejection keeps
//! the draw exactly proportional among the eligible ones); after a few
//! misses, a Fenwick tree of the eligible weights (O(log n), kept up to
//! date on every eligibility change) draws instead.

use crate::dest::DestState;
use crate::least::Order;

/// Draws from the alias table before falling back to the Fenwick tree.
const ALIAS_TRIES: usize = 8;

/// One column of the alias table: its own server below `threshold` (out
/// of the total base weight), `alias` above.
#[derive(Debug, Clone, Copy)]
struct Column {
    threshold: u64,
    alias: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Twos {
    /// Fenwick tree (1-based) over each server's weight if eligible, else 0.
    tree: Vec<u64>,
    weights: Vec<u64>,
    total: u64,
    /// Each server's weight if weighted, healthy and not removed (what
    /// the alias table is built from), else 0.
    base: Vec<u64>,
    columns: Vec<Column>,
    base_total: u64,
    /// `base` changed since the table was built.
    stale: bool,
    rng: u64,
}

impl Twos {
    pub(crate) fn new(dests: &[DestState], seed: u64) -> Self {
        let n = dests.len();
        let mut t =
            Twos { tree: vec![0; n + 1], weights: vec![0; n], total: 0, base: vec![0; n], columns: Vec::new(), base_total: 0, stale: true, rng: seed | 1 };
        for i in 0..n {
            t.refresh(dests, i);
        }
        t
    }

    pub(crate) fn refresh(&mut self, dests: &[DestState], i: usize) {
        if i >= self.weights.len() {
            *self = Twos::new(dests, self.rng);
            return;
        }
        let d = &dests[i];
        let base = if d.available { u64::from(d.weight()) } else { 0 };
        if base != self.base[i] {
            self.base[i] = base;
            self.stale = true;
        }
        let w = if d.eligible() { u64::from(d.weight()) } else { 0 };
        // Most calls are count changes that leave the weight as it was.
        if w == self.weights[i] {
            return;
        }
        let delta = w.wrapping_sub(self.weights[i]);
        self.weights[i] = w;
        self.total = self.total.wrapping_add(delta);
        let mut k = i + 1;
        while k < self.tree.len() {
            self.tree[k] = self.tree[k].wrapping_add(delta);
            k += k & k.wrapping_neg();
        }
    }

    /// Vose's alias method in integers: column `k` is worth `base[k] * n`
    /// out of `n * total`; small columns are topped up from large ones.
    fn rebuild(&mut self) {
        let n = self.base.len() as u64;
        let total: u64 = self.base.iter().sum();
        self.base_total = total;
        self.stale = false;
        self.columns = (0..self.base.len()).map(|k| Column { threshold: total, alias: k as u32 }).collect();
        if total == 0 {
            return;
        }
        let mut worth: Vec<u64> = self.base.iter().map(|&w| w * n).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..worth.len()).partition(|&k| worth[k] < total);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            self.columns[s] = Column { threshold: worth[s], alias: l as u32 };
            worth[l] -= total - worth[s];
            if worth[l] < total {
                large.pop();
                small.push(l);
            }
        }
        // What is left is full (rounding cannot leave any: integers).
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniform draw below `bound`, by multiply-shift (the kernel's
    /// `reciprocal_scale`) rather than a division.
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(bound)) >> 64) as u64
    }

    /// The server whose cumulative weight range holds `r` (< total).
    fn find(&self, mut r: u64) -> usize {
        let mut pos = 0;
        let mut step = (self.tree.len() - 1).next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next < self.tree.len() && self.tree[next] <= r {
                pos = next;
                r -= self.tree[next];
            }
            step /= 2;
        }
        pos
    }

    /// One eligible server, drawn in proportion to its weight.
    fn draw(&mut self, dests: &[DestState]) -> usize {
        for _ in 0..ALIAS_TRIES {
            let k = self.below(self.columns.len() as u64) as usize;
            let c = self.columns[k];
            let i = if self.below(self.base_total) < c.threshold { k } else { c.alias as usize };
            if dests[i].eligible() {
                return i;
            }
        }
        let r = self.below(self.total);
        self.find(r)
    }

    pub(crate) fn pick(&mut self, dests: &[DestState]) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        if self.stale {
            self.rebuild();
        }
        let (a, b) = (self.draw(dests), self.draw(dests));
        Some(if Order::Wlc.better(&dests[b], &dests[a]) { b } else { a })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::dest;

    #[test]
    fn draws_follow_weights_and_skip_ineligible() {
        let mut d = vec![dest(1), dest(0), dest(3)];
        let mut t = Twos::new(&d, 42);
        let mut counts = [0; 3];
        for _ in 0..4000 {
            counts[t.pick(&d).unwrap()] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!(counts[2] > counts[0], "{counts:?}");
        d[2].available = false;
        t.refresh(&d, 2);
        assert!((0..100).all(|_| t.pick(&d) == Some(0)));
        d[0].config.weight = 0;
        t.refresh(&d, 0);
        assert_eq!(t.pick(&d), None);
    }

    #[test]
    fn prefers_the_less_loaded_of_two() {
        let mut d = vec![dest(1), dest(1)];
        d[0].active = 50;
        let mut t = Twos::new(&d, 7);
        let ones = (0..1000).filter(|_| t.pick(&d) == Some(1)).count();
        // Picks server 0 only when both draws land on it: about 1/4.
        assert!((650..850).contains(&ones), "{ones}");
    }

    #[test]
    fn same_seed_same_picks() {
        let d: Vec<_> = (1..20).map(dest).collect();
        let mut a = Twos::new(&d, 99);
        let mut b = Twos::new(&d, 99);
        for _ in 0..100 {
            assert_eq!(a.pick(&d), b.pick(&d));
        }
    }

    /// The table's draw frequencies are exactly the weights: each column
    /// is worth n * total, split between it and its alias.
    #[test]
    fn alias_columns_carry_exactly_the_weights() {
        for weights in [vec![1u32, 2, 3, 4], vec![5, 0, 5], vec![7], vec![1, 65535, 3, 0, 9, 9, 2], (1..100).collect()] {
            let d: Vec<_> = weights.iter().map(|&w| dest(w)).collect();
            let mut t = Twos::new(&d, 1);
            t.rebuild();
            let n = weights.len() as u64;
            let mut share = vec![0u64; weights.len()];
            for (k, c) in t.columns.iter().enumerate() {
                share[k] += c.threshold;
                share[c.alias as usize] += t.base_total - c.threshold;
            }
            let want: Vec<u64> = weights.iter().map(|&w| u64::from(w) * n).collect();
            assert_eq!(share, want, "{weights:?}");
        }
    }

    /// Overloaded servers are drawn again, and when the table keeps
    /// missing the Fenwick tree draws: only eligible servers come out.
    #[test]
    fn overloaded_servers_are_redrawn() {
        let mut d: Vec<_> = (0..50).map(|_| dest(10)).collect();
        let mut t = Twos::new(&d, 5);
        assert!(t.pick(&d).is_some());
        for (k, x) in d.iter_mut().enumerate() {
            x.overloaded = k != 17;
        }
        for k in 0..50 {
            t.refresh(&d, k);
        }
        assert!(!t.stale, "an overload changes no base weight: no rebuild");
        assert!((0..500).all(|_| t.pick(&d) == Some(17)));
        // Health does: the table is rebuilt without the failed server.
        d[17].available = false;
        d[3].overloaded = false;
        t.refresh(&d, 17);
        t.refresh(&d, 3);
        assert!(t.stale);
        assert!((0..500).all(|_| t.pick(&d) == Some(3)));
    }
}
