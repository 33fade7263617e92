//! A tournament (winner) tree over destination indices: the best eligible
//! destination under some order is at the root, so a pick is O(1), and a
//! change to one destination replays only its path to the root, O(log n).
//! This is what keeps lc/wlc/sed/nq/fo/ovf flat from 10 to 10,000 servers,
//! where IPVS scans the whole list on every new connection.
//!
//! Ties go to the lower index (leaves are in index order and the left child
//! wins ties), which is IPVS's "first in the list" rule.

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Default)]
pub(crate) struct Tournament {
    /// Leaf count, a power of two.
    width: usize,
    /// `nodes[1]` is the root; leaf `i` is `nodes[width + i]`. Each node
    /// holds the winning index of its subtree or NONE.
    nodes: Vec<u32>,
}

impl Tournament {
    /// Builds over `n` destinations. `eligible(i)` filters; `better(a, b)`
    /// is true when `a` must win over `b`.
    pub(crate) fn build(n: usize, eligible: impl Fn(usize) -> bool, better: impl Fn(usize, usize) -> bool) -> Self {
        let width = n.next_power_of_two().max(1);
        let mut nodes = vec![NONE; 2 * width];
        for i in 0..n {
            if eligible(i) {
                nodes[width + i] = i as u32;
            }
        }
        for k in (1..width).rev() {
            nodes[k] = Self::winner(nodes[2 * k], nodes[2 * k + 1], &better);
        }
        Tournament { width, nodes }
    }

    #[inline]
    fn winner(left: u32, right: u32, better: &impl Fn(usize, usize) -> bool) -> u32 {
        if left == NONE {
            right
        } else if right == NONE || !better(right as usize, left as usize) {
            left
        } else {
            right
        }
    }

    /// Number of leaves it was built for (rounded up to a power of two).
    pub(crate) fn capacity(&self) -> usize {
        self.width
    }

    /// Replays destination `i` after its eligibility or key changed.
    #[inline]
    pub(crate) fn update(&mut self, i: usize, eligible: bool, better: impl Fn(usize, usize) -> bool) {
        let mut k = self.width + i;
        self.nodes[k] = if eligible { i as u32 } else { NONE };
        while k > 1 {
            k /= 2;
            self.nodes[k] = Self::winner(self.nodes[2 * k], self.nodes[2 * k + 1], &better);
        }
    }

    #[inline]
    pub(crate) fn best(&self) -> Option<usize> {
        let r = self.nodes[1];
        (r != NONE).then_some(r as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// After any sequence of updates the root is the first minimum.
        #[test]
        fn root_is_first_argmin(
            init in proptest::collection::vec((any::<bool>(), 0u32..5), 1..40),
            changes in proptest::collection::vec((any::<usize>(), any::<bool>(), 0u32..5), 0..60),
        ) {
            let mut keys = init.clone();
            let n = keys.len();
            let mut t = {
                let k = &keys;
                Tournament::build(n, |i| k[i].0, |a, b| k[a].1 < k[b].1)
            };
            for (i, e, v) in changes {
                let i = i % n;
                keys[i] = (e, v);
                let k = &keys;
                t.update(i, e, |a, b| k[a].1 < k[b].1);
            }
            let want = keys.iter().enumerate().filter(|(_, k)| k.0).min_by_key(|(i, k)| (k.1, *i)).map(|(i, _)| i);
            prop_assert_eq!(t.best(), want);
        }
    }
}
