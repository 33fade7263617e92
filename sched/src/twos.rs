//! twos: weighted random twos choice (`ip_vs_twos.c`). Two servers are
//! drawn at random in proportion to their weights; the one with the lower
//! overhead/weight wins. The draw uses a Fenwick tree of the eligible
//! weights (O(log n)) and a fixed-seed xorshift generator, so the same
//! configuration gives the same picks everywhere.

use crate::dest::DestState;
use crate::least::Order;

#[derive(Debug, Clone)]
pub(crate) struct Twos {
    /// Fenwick tree (1-based) over each server's weight if eligible, else
    /// 0, padded with weightless slots to a power of two so a draw's
    /// descent has no bounds to test.
    tree: Vec<u64>,
    weights: Vec<u64>,
    total: u64,
    rng: u64,
}

impl Twos {
    pub(crate) fn new(dests: &[DestState], seed: u64) -> Self {
        let width = dests.len().next_power_of_two();
        let mut t = Twos { tree: vec![0; width + 1], weights: vec![0; dests.len()], total: 0, rng: seed | 1 };
        for i in 0..dests.len() {
            t.refresh(dests, i);
        }
        t
    }

    pub(crate) fn refresh(&mut self, dests: &[DestState], i: usize) {
        if i >= self.weights.len() {
            *self = Twos::new(dests, self.rng);
            return;
        }
        let w = if dests[i].eligible() { u64::from(dests[i].weight()) } else { 0 };
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

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The server whose cumulative weight range holds `r` (< total). The
    /// descent branches (measured: selecting instead makes each step wait
    /// for the previous load, which at 10,000 servers is slower than the
    /// mispredictions; branches let the next load start early).
    fn find(&self, mut r: u64) -> usize {
        let mut pos = 0;
        let mut step = self.tree.len() - 1;
        while step > 0 {
            let v = self.tree[pos + step];
            if v <= r {
                pos += step;
                r -= v;
            }
            step /= 2;
        }
        pos
    }

    /// A uniform draw below `total`, by multiply-shift (the kernel's
    /// `reciprocal_scale`) rather than a division.
    fn below_total(&mut self) -> u64 {
        ((u128::from(self.next()) * u128::from(self.total)) >> 64) as u64
    }

    pub(crate) fn pick(&mut self, dests: &[DestState]) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        let (ra, rb) = (self.below_total(), self.below_total());
        let (a, b) = (self.find(ra), self.find(rb));
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
}
