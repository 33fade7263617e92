//! Weighted round robin in IPVS's interleaved order (`ip_vs_wrr.c`): a
//! current weight `cw` starts at the maximum weight and steps down by the gcd
//! of all weights; each pass picks, in list order, the servers whose weight is
//! at least `cw`. With weights 1:2 the order is B, A, B, B, A, B, ... rather
//! than bursts of one server.

use crate::dest::DestState as Dest;

#[derive(Debug, Clone)]
pub(crate) struct WeightedRoundRobin {
    /// Position in the list; `None` is the list head (before the first server).
    cursor: Option<usize>,
    cw: i64,
    /// Maximum weight adjusted as IPVS does: `max - (gcd - 1)`.
    mw: i64,
    /// gcd of the non-zero weights.
    di: i64,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl WeightedRoundRobin {
    pub(crate) fn new(dests: &[Dest]) -> Self {
        let mut s = WeightedRoundRobin { cursor: None, cw: 0, mw: 0, di: 1 };
        s.update(dests);
        s
    }

    /// Recomputes gcd and maximum after weights change (IPVS does this on
    /// every edit of the service) and restarts the cycle.
    pub(crate) fn update(&mut self, dests: &[Dest]) {
        let g = dests.iter().map(|d| d.weight()).filter(|&w| w > 0).fold(0, gcd);
        let max = dests.iter().map(|d| d.weight()).max().unwrap_or(0);
        self.di = i64::from(g.max(1));
        self.mw = i64::from(max) - (self.di - 1);
        self.cw = self.mw;
        self.cursor = None;
    }

    pub(crate) fn pick(&mut self, dests: &[Dest]) -> Option<usize> {
        let n = dests.len();
        if self.mw <= 0 || n == 0 {
            return None;
        }
        // A cursor past a shortened list restarts from the head.
        let mut pos = self.cursor.filter(|&c| c < n);
        // At most two full sweeps of every weight level: enough to visit
        // every (server, cw) pair once, so an all-ineligible list ends.
        let levels = (self.mw / self.di + 1) as usize;
        for _ in 0..(n + 1) * levels * 2 {
            let next = pos.map_or(0, |p| p + 1);
            if next >= n {
                // Wrapped past the end of the list: lower the bar.
                pos = None;
                self.cw -= self.di;
                if self.cw <= 0 {
                    self.cw = self.mw;
                }
                continue;
            }
            pos = Some(next);
            let d = dests[next];
            if d.eligible() && i64::from(d.weight()) >= self.cw {
                self.cursor = pos;
                return pos;
            }
        }
        self.cursor = pos;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(weights: &[u32], count: usize) -> Vec<usize> {
        let d: Vec<_> = weights.iter().map(|&w| crate::tests::dest(w)).collect();
        let mut s = WeightedRoundRobin::new(&d);
        (0..count).map(|_| s.pick(&d).unwrap()).collect()
    }

    #[test]
    fn ipvs_order_one_to_two() {
        // Traced by hand through ip_vs_wrr_schedule: cw starts at 2.
        assert_eq!(seq(&[1, 2], 6), [1, 0, 1, 1, 0, 1]);
    }

    #[test]
    fn ipvs_order_with_gcd() {
        // Weights 4:6 -> gcd 2, mw = 6 - 1 = 5, cw steps 5, 3, 1.
        assert_eq!(seq(&[4, 6], 10), [1, 0, 1, 0, 1, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn ipvs_order_three_servers() {
        // Weights 4,3,2: gcd 1, cw 4,3,2,1.
        assert_eq!(seq(&[4, 3, 2], 9), [0, 0, 1, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn shares_follow_weights_exactly_per_cycle() {
        let weights = [5, 1, 3, 0, 7];
        let total: u32 = weights.iter().sum();
        let picks = seq(&weights, total as usize * 10);
        for (i, &w) in weights.iter().enumerate() {
            assert_eq!(picks.iter().filter(|&&p| p == i).count(), w as usize * 10);
        }
    }

    #[test]
    fn skips_unavailable_without_looping_forever() {
        let mut d = vec![crate::tests::dest(2), crate::tests::dest(1)];
        d[0].available = false;
        let mut s = WeightedRoundRobin::new(&d);
        assert_eq!((0..3).map(|_| s.pick(&d).unwrap()).collect::<Vec<_>>(), [1, 1, 1]);
        d[1].available = false;
        assert_eq!(s.pick(&d), None);
    }
}
