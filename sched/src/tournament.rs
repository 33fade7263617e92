//! A tournament (winner) tree over destination indices: the best eligible
//! destination under some order is at the root, so a pick is O(1), and a
//! change to one destination replays its path towards the root, O(log n).
//! This is what keeps lc/wlc/sed/nq/fo/ovf flat from 10 to 10,000 servers,
//! where IPVS scans the whole list on every new connection.
//!
//! Each node holds its winner's index and sort key inline, so replaying a
//! path touches only the tree (no jumps into the server array), and a
//! replay stops at the first node whose (winner, key) did not change: the
//! nodes above depend on nothing else.
//!
//! Ties go to the lower index (leaves are in index order and the left child
//! wins ties), which is IPVS's "first in the list" rule.

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Node<K> {
    key: K,
    idx: u32,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Tournament<K> {
    /// Leaf count, a power of two.
    width: usize,
    /// `nodes[1]` is the root; leaf `i` is `nodes[width + i]`.
    nodes: Vec<Node<K>>,
}

impl<K: Copy + Default + PartialEq> Tournament<K> {
    /// Builds over `n` destinations: `key(i)` is `None` for an ineligible
    /// one; `better(a, b)` is true when key `a` must win over key `b`.
    pub(crate) fn build(n: usize, key: impl Fn(usize) -> Option<K>, better: impl Fn(&K, &K) -> bool) -> Self {
        let width = n.next_power_of_two().max(1);
        let empty = Node { idx: NONE, key: K::default() };
        let mut nodes = vec![empty; 2 * width];
        for i in 0..n {
            if let Some(k) = key(i) {
                nodes[width + i] = Node { idx: i as u32, key: k };
            }
        }
        for k in (1..width).rev() {
            nodes[k] = Self::winner(nodes[2 * k], nodes[2 * k + 1], &better);
        }
        Tournament { width, nodes }
    }

    #[inline]
    fn winner(left: Node<K>, right: Node<K>, better: &impl Fn(&K, &K) -> bool) -> Node<K> {
        if left.idx == NONE || (right.idx != NONE && better(&right.key, &left.key)) {
            right
        } else {
            left
        }
    }

    /// Number of leaves it was built for (rounded up to a power of two).
    pub(crate) fn capacity(&self) -> usize {
        self.width
    }

    /// Replays destination `i` after its key or eligibility changed.
    #[inline]
    pub(crate) fn update(&mut self, i: usize, key: Option<K>, better: impl Fn(&K, &K) -> bool) {
        let mut k = self.width + i;
        self.nodes[k] = match key {
            Some(key) => Node { idx: i as u32, key },
            None => Node { idx: NONE, key: K::default() },
        };
        while k > 1 {
            k /= 2;
            let new = Self::winner(self.nodes[2 * k], self.nodes[2 * k + 1], &better);
            if new == self.nodes[k] {
                return;
            }
            self.nodes[k] = new;
        }
    }

    #[inline]
    pub(crate) fn best(&self) -> Option<usize> {
        let r = self.nodes[1].idx;
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
            let key = |k: &Vec<(bool, u32)>, i: usize| k[i].0.then_some(k[i].1);
            let mut t = Tournament::build(n, |i| key(&keys, i), |a: &u32, b: &u32| a < b);
            for (i, e, v) in changes {
                let i = i % n;
                keys[i] = (e, v);
                t.update(i, key(&keys, i), |a, b| a < b);
            }
            let want = keys.iter().enumerate().filter(|(_, k)| k.0).min_by_key(|(i, k)| (k.1, *i)).map(|(i, _)| i);
            prop_assert_eq!(t.best(), want);
        }
    }
}
