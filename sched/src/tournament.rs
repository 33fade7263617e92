//! A tournament (winner) tree over destination indices: the best eligible
//! destination under some order is at the root, so a pick is O(1), and a
//! change to one destination replays its path towards the root, O(log n).
//! This is what keeps lc/wlc/sed/nq/fo/ovf flat from 10 to 10,000 servers,
//! where IPVS scans the whole list on every new connection.
//!
//! The tree is 4-ary and each node is 16 bytes (its winner's sort key and
//! index inline), so the four children of a node fill exactly one 64-byte
//! cache line: a replay from a leaf to the root reads one line per level,
//! 7 at 10,000 servers where a binary tree reads 14. A replay stops at the
//! first node whose entry did not change: the nodes above depend on
//! nothing else. An entry that got better (a connection closed) needs
//! less: it climbs while it beats the node above, one comparison per level
//! and no siblings; only one that got worse (a connection scheduled) meets
//! its siblings on the way up.
//!
//! Ties go to the lower index, which is IPVS's "first in the list" rule:
//! the orders compare the index last, so no two real entries tie.

/// What a node holds: a destination's sort key and index.
pub(crate) trait Entry: Copy + PartialEq {
    /// The entry of no destination (an ineligible one, or padding). The
    /// order must rank it below every real entry (`better(real, EMPTY)`,
    /// never `better(EMPTY, _)`), so a match needs no emptiness test.
    const EMPTY: Self;
    fn is_empty(&self) -> bool;
    fn index(&self) -> usize;
}

/// Children per node. With 16-byte entries a family of 4 siblings is one
/// cache line, and the tree is 7 levels deep at 10,000 servers. (Measured:
/// 8 children, two lines and 5 levels, costs more: the siblings' seven
/// comparisons per level outweigh the two levels saved.)
const ARITY: usize = 4;

/// A family of siblings on one cache line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Group<E>([E; ARITY]);

#[derive(Debug, Clone)]
pub(crate) struct Tournament<E> {
    /// Leaf count, a power of `ARITY`.
    width: usize,
    /// Index of the first leaf in node numbering.
    first_leaf: usize,
    /// Node `j` is `groups[j / ARITY].0[j % ARITY]`. The root is node
    /// `ARITY - 1`, so that each family of siblings starts a group; nodes
    /// below it are unused.
    groups: Vec<Group<E>>,
}

const ROOT: usize = ARITY - 1;

#[inline]
fn parent(j: usize) -> usize {
    j / ARITY + ROOT - 1
}

#[inline]
fn first_child(j: usize) -> usize {
    ARITY * (j + 1 - ROOT)
}

impl<E: Entry> Tournament<E> {
    /// Builds over `n` destinations: `entry(i)` is `E::EMPTY` for an
    /// ineligible one; `better(a, b)` is true when `a` must win over `b`
    /// (a strict total order on real entries: see [`Self::update`]).
    pub(crate) fn build(n: usize, entry: impl Fn(usize) -> E, better: impl Fn(&E, &E) -> bool) -> Self {
        let mut width = ARITY;
        let mut internal = 1; // nodes above the leaves
        while width < n {
            internal += width;
            width *= ARITY;
        }
        let first_leaf = ROOT + internal;
        let mut t = Tournament { width, first_leaf, groups: vec![Group([E::EMPTY; ARITY]); (first_leaf + width).div_ceil(ARITY)] };
        for i in 0..n {
            *t.node_mut(first_leaf + i) = entry(i);
        }
        for j in (ROOT..first_leaf).rev() {
            let g = &t.groups[first_child(j) / ARITY].0;
            let left = usize::from(better(&g[1], &g[0]));
            let right = 2 + usize::from(better(&g[3], &g[2]));
            *t.node_mut(j) = g[if better(&g[right], &g[left]) { right } else { left }];
        }
        t
    }

    #[inline]
    fn node_mut(&mut self, j: usize) -> &mut E {
        &mut self.groups[j / ARITY].0[j % ARITY]
    }

    /// Number of leaves it was built for (rounded up to a power of `ARITY`).
    pub(crate) fn capacity(&self) -> usize {
        self.width
    }

    /// Replays destination `i` after its key or eligibility changed.
    /// `better` must be a strict total order on real entries (ties broken
    /// by index), so the order of the siblings does not matter.
    #[inline]
    pub(crate) fn update(&mut self, i: usize, entry: E, better: impl Fn(&E, &E) -> bool) {
        let j = self.first_leaf + i;
        let leaf = self.node_mut(j);
        let old = *leaf;
        if entry == old {
            return;
        }
        *leaf = entry;
        if better(&entry, &old) {
            self.improve(j, entry, better);
        } else {
            self.worsen(j, entry, better);
        }
    }

    /// The entry at node `j` got better: each node above holds either its
    /// old entry (which the new one beats) or one that beat the old one,
    /// from elsewhere in its subtree; so the new entry only has to meet the
    /// node itself, one comparison per level and no siblings, and the climb
    /// stops at the first node it does not win. (A connection closing, the
    /// other half of every connection's accounting, is always this case.)
    #[inline]
    fn improve(&mut self, mut j: usize, entry: E, better: impl Fn(&E, &E) -> bool) {
        while j > ROOT {
            j = parent(j);
            let node = self.node_mut(j);
            if !better(&entry, node) {
                return;
            }
            *node = entry;
        }
    }

    /// The entry at node `j` got worse (or ineligible): wherever it was
    /// winning, the best of its siblings may win instead. At each level the
    /// changed entry meets the best of its three siblings, which do not
    /// depend on the replay: the processor works them out ahead, and the
    /// chain from one level to the next is a single comparison. Siblings
    /// are chosen by value, never by a computed position, so no comparison
    /// waits on an index or a bounds check. A replay stops where a node
    /// keeps its entry.
    #[inline]
    fn worsen(&mut self, mut j: usize, entry: E, better: impl Fn(&E, &E) -> bool) {
        let mut cur = entry;
        while j > ROOT {
            let p = parent(j);
            let pos = j % ARITY;
            let g = &self.groups[j / ARITY].0;
            let (a, b, c) = (g[(pos + 1) % ARITY], g[(pos + 2) % ARITY], g[(pos + 3) % ARITY]);
            let ab = if better(&b, &a) { b } else { a };
            let sib = if better(&c, &ab) { c } else { ab };
            let new = if better(&sib, &cur) { sib } else { cur };
            let node = self.node_mut(p);
            if new == *node {
                return;
            }
            *node = new;
            cur = new;
            j = p;
        }
    }

    #[inline]
    pub(crate) fn best(&self) -> Option<usize> {
        let root = self.groups[0].0[ROOT];
        (!root.is_empty()).then(|| root.index())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A test entry: (value, index); lower value wins, and the empty
    /// entry's value is above every real one.
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct V(u32, u32);

    impl Entry for V {
        const EMPTY: V = V(u32::MAX, u32::MAX);
        fn is_empty(&self) -> bool {
            self.1 == u32::MAX
        }
        fn index(&self) -> usize {
            self.1 as usize
        }
    }

    #[test]
    fn node_numbering_puts_siblings_in_one_group() {
        assert_eq!((first_child(ROOT), parent(ARITY), parent(2 * ARITY - 1)), (ARITY, ROOT, ROOT));
        for p in ROOT..500 {
            let c = first_child(p);
            assert_eq!(c % ARITY, 0, "siblings start a group");
            assert!((c..c + ARITY).all(|k| parent(k) == p));
        }
        assert_eq!(core::mem::align_of::<Group<V>>(), 64);
        let t = Tournament::build(ARITY + 1, |i| V(1, i as u32), |a: &V, b: &V| (a.0, a.1) < (b.0, b.1));
        assert_eq!((t.capacity(), t.first_leaf), (ARITY * ARITY, ROOT + 1 + ARITY));
        assert_eq!(t.best(), Some(0));
    }

    proptest! {
        /// After any sequence of updates the root is the first minimum.
        #[test]
        fn root_is_first_argmin(
            init in proptest::collection::vec((any::<bool>(), 0u32..5), 1..80),
            changes in proptest::collection::vec((any::<usize>(), any::<bool>(), 0u32..5), 0..60),
        ) {
            let mut keys = init.clone();
            let n = keys.len();
            let entry = |k: &Vec<(bool, u32)>, i: usize| if k[i].0 { V(k[i].1, i as u32) } else { V::EMPTY };
            // Value first, then index: a strict total order.
            let better = |a: &V, b: &V| (a.0, a.1) < (b.0, b.1);
            let mut t = Tournament::build(n, |i| entry(&keys, i), better);
            for (i, e, v) in changes {
                let i = i % n;
                keys[i] = (e, v);
                t.update(i, entry(&keys, i), better);
            }
            let want = keys.iter().enumerate().filter(|(_, k)| k.0).min_by_key(|(i, k)| (k.1, *i)).map(|(i, _)| i);
            prop_assert_eq!(t.best(), want);
        }

        /// Counts the way a pool moves them, one up or down at a time (so
        /// both the climb of an improved entry and the replay of a worse
        /// one run often, with many ties): the root is the first minimum
        /// after every step, and every node holds its subtree's best.
        #[test]
        fn unit_steps_keep_every_node_right(
            n in 1usize..70,
            steps in proptest::collection::vec((any::<usize>(), any::<bool>()), 1..300),
        ) {
            let mut keys = vec![2u32; n];
            let better = |a: &V, b: &V| (a.0, a.1) < (b.0, b.1);
            let mut t = Tournament::build(n, |i| V(keys[i], i as u32), better);
            for (i, up) in steps {
                let i = i % n;
                keys[i] = if up { keys[i] + 1 } else { keys[i].saturating_sub(1) };
                t.update(i, V(keys[i], i as u32), better);
                let want = (0..n).min_by_key(|&i| (keys[i], i));
                prop_assert_eq!(t.best(), want);
            }
            for p in (ROOT..t.first_leaf).rev() {
                let c = first_child(p);
                let kids: Vec<V> = (c..c + ARITY).map(|k| t.groups[k / ARITY].0[k % ARITY]).collect();
                let best = kids.iter().copied().fold(V::EMPTY, |b, k| if better(&k, &b) { k } else { b });
                prop_assert_eq!(t.groups[p / ARITY].0[p % ARITY], best, "node {}", p);
            }
        }
    }
}
