//! The schedulers that pick an extreme over all eligible servers: lc, wlc,
//! sed, nq (least load), fo, ovf (highest weight). Each is an order on
//! destinations kept in a [`Tournament`], so a pick is O(1) and a change
//! to one server costs O(log n).

use crate::dest::DestState;
use crate::tournament::{Entry, Tournament};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Least connections: lowest overhead.
    Lc,
    /// Weighted least connections: lowest overhead / weight.
    Wlc,
    /// Shortest expected delay: lowest (active + 1) / weight.
    Sed,
    /// Never queue: an idle server first (in list order), else as sed.
    Nq,
    /// Weighted failover: highest weight.
    Fo,
    /// Overflow: highest weight among servers with active < weight.
    Ovf,
}

/// `a * wb < b * wa` without overflow: a/wa < b/wb.
#[inline]
fn ratio_less(a: u64, wa: u32, b: u64, wb: u32) -> bool {
    u128::from(a) * u128::from(wb) < u128::from(b) * u128::from(wa)
}

impl Order {
    #[inline]
    pub(crate) fn eligible(self, d: &DestState) -> bool {
        d.eligible() && (self != Order::Ovf || d.active < d.weight())
    }

    /// True when `a` must be picked over `b` (ties: neither, so the lower
    /// index wins, as IPVS's list scan does).
    #[inline]
    pub(crate) fn better(self, a: &DestState, b: &DestState) -> bool {
        let sed = |a: &DestState, b: &DestState| ratio_less(u64::from(a.active) + 1, a.weight(), u64::from(b.active) + 1, b.weight());
        match self {
            Order::Lc => a.overhead() < b.overhead(),
            Order::Wlc => ratio_less(a.overhead(), a.weight(), b.overhead(), b.weight()),
            Order::Sed => sed(a, b),
            Order::Nq => match (a.active == 0, b.active == 0) {
                (true, false) => true,
                (false, true) | (true, true) => false,
                (false, false) => sed(a, b),
            },
            Order::Fo | Order::Ovf => a.weight() > b.weight(),
        }
    }
}

/// A tree node: what an order compares and the destination's index, in
/// 16 bytes (four nodes per cache line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Key {
    /// lc/wlc: overhead (below 2^41); sed/nq: active + 1 (at most 2^32);
    /// fo/ovf: unused.
    load: u64,
    /// At most 65535.
    weight: u32,
    idx: u32,
}

/// The load of an empty node: above every real load (< 2^42), and below
/// 2^48 so its products with weights stay in u64.
const EMPTY_LOAD: u64 = 1 << 47;

impl Entry for Key {
    // Weight 0 and the largest load: every order ranks it below
    // every eligible destination (which weighs at least 1): lc by load,
    // wlc/sed/nq because x * 0 < EMPTY_LOAD * w, fo/ovf by weight.
    const EMPTY: Key = Key { load: EMPTY_LOAD, weight: 0, idx: u32::MAX };

    #[inline]
    fn is_empty(&self) -> bool {
        self.idx == u32::MAX
    }

    #[inline]
    fn index(&self) -> usize {
        self.idx as usize
    }
}

/// A key's load times another key's weight, the two sides of `a / wa <
/// b / wb` cross-multiplied: loads below 2^48 (the empty key's included)
/// and weights below 2^16 keep it below 2^64, so it is exact in u64.
#[inline(always)]
fn scaled(load: u64, weight: u32) -> u64 {
    load * u64::from(weight)
}

impl Order {
    /// The tree entry of destination `i`, empty when it is not eligible.
    #[inline]
    fn key(self, d: &DestState, i: usize) -> Key {
        if !self.eligible(d) {
            return Key::EMPTY;
        }
        let load = match self {
            Order::Lc | Order::Wlc => d.overhead(),
            Order::Sed => u64::from(d.active) + 1,
            // nq: an idle server first, the first such in the list: load 0
            // ties every idle server at the best ratio, and ties go left.
            Order::Nq if d.active == 0 => 0,
            Order::Nq => u64::from(d.active) + 1,
            Order::Fo | Order::Ovf => 0,
        };
        Key { load, weight: d.weight().min(0xffff), idx: i as u32 }
    }

    /// `better` on keys: the same order as [`Order::better`], its ties
    /// broken by the lower index (a strict total order, as the tree
    /// wants).
    #[inline(always)]
    fn key_better(self, a: &Key, b: &Key) -> bool {
        let (x, y) = match self {
            Order::Lc => (a.load, b.load),
            // a.load / a.weight < b.load / b.weight, cross-multiplied.
            Order::Wlc | Order::Sed | Order::Nq => (scaled(a.load, b.weight), scaled(b.load, a.weight)),
            // Heavier first.
            Order::Fo | Order::Ovf => (u64::from(b.weight), u64::from(a.weight)),
        };
        x < y || (x == y && a.idx < b.idx)
    }

    /// Whether connection counts enter the order (fo and ovf rank by
    /// weight: counts matter to them only through eligibility).
    fn counts_matter(self) -> bool {
        !matches!(self, Order::Fo | Order::Ovf)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Least {
    order: Order,
    tree: Tournament<Key>,
    /// fo/ovf: eligibility as last seen, to skip replays on count changes.
    eligible: Vec<bool>,
}

impl Least {
    pub(crate) fn new(order: Order, dests: &[DestState]) -> Self {
        let tree = Tournament::build(dests.len(), |i| order.key(&dests[i], i), |a, b| order.key_better(a, b));
        Least { order, tree, eligible: dests.iter().map(|d| order.eligible(d)).collect() }
    }

    #[inline]
    pub(crate) fn pick(&self) -> Option<usize> {
        self.tree.best()
    }

    /// Server `i` changed (counts, weight, health, threshold).
    #[inline]
    pub(crate) fn refresh(&mut self, dests: &[DestState], i: usize) {
        if i >= self.tree.capacity() || i >= self.eligible.len() {
            *self = Least::new(self.order, dests);
            return;
        }
        let order = self.order;
        // Only fo/ovf read it back: lc and friends skip the store (one
        // cache line fewer per update at thousands of servers).
        if !order.counts_matter() {
            self.eligible[i] = order.eligible(&dests[i]);
        }
        let key = order.key(&dests[i], i);
        // One replay per order, each with its comparison inlined: a match
        // on the order inside every comparison costs about as much as the
        // comparison itself.
        match order {
            Order::Lc => self.tree.update(i, key, |a, b| Order::Lc.key_better(a, b)),
            Order::Wlc => self.tree.update(i, key, |a, b| Order::Wlc.key_better(a, b)),
            Order::Sed => self.tree.update(i, key, |a, b| Order::Sed.key_better(a, b)),
            Order::Nq => self.tree.update(i, key, |a, b| Order::Nq.key_better(a, b)),
            Order::Fo => self.tree.update(i, key, |a, b| Order::Fo.key_better(a, b)),
            Order::Ovf => self.tree.update(i, key, |a, b| Order::Ovf.key_better(a, b)),
        }
    }

    /// Only the counts of `i` changed: for fo/ovf nothing to do unless its
    /// eligibility flipped.
    #[inline]
    pub(crate) fn counts_changed(&mut self, dests: &[DestState], i: usize) {
        if self.order.counts_matter() || self.eligible.get(i) != Some(&self.order.eligible(&dests[i])) {
            self.refresh(dests, i);
        }
    }
}

/// IPVS's list scan for `order`: the reference the tree must agree with.
#[cfg(test)]
pub(crate) fn scan(order: Order, dests: &[DestState]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, d) in dests.iter().enumerate() {
        if !order.eligible(d) {
            continue;
        }
        // nq takes the first idle server at once.
        if order == Order::Nq && d.active == 0 {
            return Some(i);
        }
        if best.is_none_or(|b| order.better(d, &dests[b])) {
            best = Some(i);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::dest;
    use proptest::prelude::*;

    fn with(w: u32, active: u32, inactive: u32) -> DestState {
        let mut d = dest(w);
        d.active = active;
        d.inactive = inactive;
        d
    }

    #[test]
    fn exact_picks_including_ties() {
        // lc: overhead 256*1+0 vs 256*0+300: the second is lower.
        let d = [with(1, 1, 0), with(1, 0, 200), with(1, 0, 200)];
        assert_eq!(Least::new(Order::Lc, &d).pick(), Some(1), "tie goes to the first");
        let d = [with(1, 1, 0), with(1, 0, 300)];
        assert_eq!(Least::new(Order::Lc, &d).pick(), Some(0), "256 < 300");
        // wlc: 512/2 = 256 vs 256/1 = 256: tie, first wins; weight 3 makes the third best.
        let d = [with(2, 2, 0), with(1, 1, 0), with(3, 2, 0)];
        assert_eq!(Least::new(Order::Wlc, &d).pick(), Some(2));
        assert_eq!(Least::new(Order::Wlc, &d[..2]).pick(), Some(0));
        // sed: (1+1)/1 = 2 vs (3+1)/2 = 2: tie -> first; (0+1)/1 = 1 best.
        let d = [with(1, 1, 0), with(2, 3, 0), with(1, 0, 5)];
        assert_eq!(Least::new(Order::Sed, &d).pick(), Some(2));
        assert_eq!(Least::new(Order::Sed, &d[..2]).pick(), Some(0));
        // nq: the first idle server, even with a worse ratio.
        let d = [with(100, 1, 0), with(1, 0, 9), with(1, 0, 0)];
        assert_eq!(Least::new(Order::Nq, &d).pick(), Some(1));
        // fo: highest weight, first on ties, skipping quiescent/unavailable.
        let mut d = [with(3, 0, 0), with(7, 0, 0), with(7, 0, 0), with(0, 0, 0)];
        assert_eq!(Least::new(Order::Fo, &d).pick(), Some(1));
        d[1].available = false;
        assert_eq!(Least::new(Order::Fo, &d).pick(), Some(2));
        // ovf: highest weight whose active count is below its weight.
        let d = [with(3, 0, 0), with(7, 7, 0), with(5, 4, 0)];
        assert_eq!(Least::new(Order::Ovf, &d).pick(), Some(2));
        let d = [with(3, 3, 0), with(7, 7, 0)];
        assert_eq!(Least::new(Order::Ovf, &d).pick(), None);
    }

    proptest! {
        /// The tree agrees with IPVS's linear scan after every change.
        #[test]
        fn tree_matches_ipvs_scan(
            order in prop::sample::select(vec![Order::Lc, Order::Wlc, Order::Sed, Order::Nq, Order::Fo, Order::Ovf]),
            init in proptest::collection::vec((0u32..4, 0u32..4, 0u32..4, any::<bool>()), 1..20),
            changes in proptest::collection::vec((any::<usize>(), 0u32..4, 0u32..4, 0u32..4, any::<bool>()), 0..30),
        ) {
            let mut d: Vec<DestState> = init.iter().map(|&(w, a, i, up)| { let mut x = with(w, a, i); x.available = up; x }).collect();
            let mut least = Least::new(order, &d);
            prop_assert_eq!(least.pick(), scan(order, &d));
            for (i, w, a, n, up) in changes {
                let i = i % d.len();
                let old = d[i];
                d[i] = with(w, a, n);
                d[i].available = up;
                // Count-only changes take the cheap path, as the pool does.
                if old.weight() == d[i].weight() && old.available == up {
                    least.counts_changed(&d, i);
                } else {
                    least.refresh(&d, i);
                }
                prop_assert_eq!(least.pick(), scan(order, &d));
            }
        }
    }
}

#[cfg(test)]
mod layout {
    #[test]
    fn tree_nodes_are_small() {
        // load (8) + weight (4) + index (4): four nodes per 64-byte line.
        assert_eq!(core::mem::size_of::<super::Key>(), 16);
    }

    #[test]
    fn u64_ratios_are_exact_at_the_extremes() {
        use super::{ratio_less, scaled};
        let key_ratio_less = |a: u64, wa: u32, b: u64, wb: u32| scaled(a, wb) < scaled(b, wa);
        let max_overhead = (u64::from(u32::MAX) << 8) + u64::from(u32::MAX);
        for (a, wa, b, wb) in [(max_overhead, 1, max_overhead - 1, 1), (max_overhead, 65535, max_overhead, 65534), (1, 65535, max_overhead, 1)] {
            assert_eq!(key_ratio_less(a, wa, b, wb), ratio_less(a, wa, b, wb));
            assert_eq!(key_ratio_less(b, wb, a, wa), ratio_less(b, wb, a, wa));
        }
    }
}
