//! The connection table's tuple index: which slab slot (and direction) a
//! flow tuple belongs to.
//!
//! Open addressing over buckets of eight entries, one 64-byte cache line
//! each: a 16-bit tag per entry (from the hash's top bits) and the entry
//! itself (slot and direction). A lookup reads one line, compares the tags
//! at once and checks the full tuple only where a tag matches, so a cold
//! lookup costs the bucket line and the slab entry it names, and both can
//! be prefetched ahead of the lookup ([`TupleIndex::prefetch`],
//! [`TupleIndex::candidate`]).
//!
//! A full bucket sends new entries to the next one (linear probing by
//! bucket); each bucket counts the entries that went past it, so a lookup
//! stops at the first bucket nobody passed, and a removal takes those
//! counts back. Sized for at most three quarters full, most lookups read a
//! single bucket.
//!
//! The hash is keyed with a random seed per table, so which tuples share a
//! bucket cannot be worked out from outside.

use super::TupleWords;

const LANES: usize = 8;

#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    /// 0: free; else the entry's tag (never 0).
    tags: [u16; LANES],
    refs: [u32; LANES],
    /// Entries whose probe went past this bucket (it was full).
    passed: u32,
}

impl Bucket {
    /// Bits `2k` and `2k + 1` set where lane `k` holds `tag`.
    #[inline(always)]
    fn tagged(&self, tag: u16) -> u32 {
        crate::prefetch::lanes_equal(&self.tags, tag)
    }
}

/// The lane of the lowest set bit of a [`Bucket::tagged`] mask.
#[inline(always)]
fn first_lane(m: u32) -> usize {
    m.trailing_zeros() as usize / 2
}

#[derive(Debug)]
pub(super) struct TupleIndex {
    buckets: Vec<Bucket>,
    mask: usize,
    seed: [u64; 2],
}

/// The high and low halves of a 128-bit product, folded.
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

impl TupleIndex {
    /// Buckets for `entries` entries at most three quarters full.
    fn buckets_for(entries: usize) -> usize {
        (entries.max(1) * 4 / 3).div_ceil(LANES).next_power_of_two()
    }

    /// Bytes an index for `entries` entries takes (all written when made).
    pub(super) fn bytes_for(entries: usize) -> usize {
        Self::buckets_for(entries) * core::mem::size_of::<Bucket>()
    }

    /// Room for `entries` entries at most three quarters full.
    pub(super) fn with_capacity(entries: usize) -> Self {
        let n = Self::buckets_for(entries);
        // Distinct per table and per run (std's hasher keys are random).
        let random = |k: u64| std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), k) | 1;
        TupleIndex { buckets: vec![Bucket::default(); n], mask: n - 1, seed: [random(1), random(2)] }
    }

    /// The hash of `key` (which bucket, and the tag in its top bits).
    #[inline(always)]
    pub(super) fn hash(&self, (a, b): TupleWords) -> u64 {
        // Two rounds: a single product of the two words spreads structured
        // tuples (one client's consecutive ports) badly over the buckets.
        fold_mul(fold_mul(a ^ self.seed[0], b ^ self.seed[1]), 0x9E37_79B9_7F4A_7C15)
    }

    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    #[inline(always)]
    fn tag(hash: u64) -> u16 {
        (hash >> 48) as u16 | 1
    }

    /// Starts loading the bucket `hash` lives in, for a lookup soon.
    #[inline(always)]
    pub(super) fn prefetch(&self, hash: u64) {
        crate::prefetch::line(&self.buckets[self.home(hash)]);
    }

    /// The first entry in `hash`'s home bucket whose tag matches: most
    /// likely the one a lookup will find (to prefetch what it names).
    #[inline(always)]
    pub(super) fn candidate(&self, hash: u64) -> Option<u32> {
        let b = &self.buckets[self.home(hash)];
        let m = b.tagged(Self::tag(hash));
        (m != 0).then(|| b.refs[first_lane(m)])
    }

    /// The entry of `hash` for which `is` says yes (it checks the tuple).
    #[inline(always)]
    pub(super) fn find(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = Self::tag(hash);
        let mut i = self.home(hash);
        for _ in 0..self.buckets.len() {
            let b = &self.buckets[i];
            let mut m = b.tagged(tag);
            while m != 0 {
                let r = b.refs[first_lane(m)];
                if is(r) {
                    return Some(r);
                }
                m &= !(3 << (m.trailing_zeros() & !1));
            }
            if b.passed == 0 {
                return None;
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Adds entry `r` under `hash` (the caller checked it is not there).
    /// False only when every bucket is full, which sizing rules out.
    pub(super) fn insert(&mut self, hash: u64, r: u32) -> bool {
        let tag = Self::tag(hash);
        let mut i = self.home(hash);
        for _ in 0..self.buckets.len() {
            let b = &mut self.buckets[i];
            if let Some(k) = b.tags.iter().position(|&t| t == 0) {
                b.tags[k] = tag;
                b.refs[k] = r;
                // Every bucket from home up to here was passed.
                let mut j = self.home(hash);
                while j != i {
                    self.buckets[j].passed += 1;
                    j = (j + 1) & self.mask;
                }
                return true;
            }
            i = (i + 1) & self.mask;
        }
        false
    }

    /// Removes entry `r` of `hash`; false if it is not there.
    pub(super) fn remove(&mut self, hash: u64, r: u32) -> bool {
        let tag = Self::tag(hash);
        let home = self.home(hash);
        let mut i = home;
        for _ in 0..self.buckets.len() {
            let b = &mut self.buckets[i];
            if let Some(k) = (0..LANES).find(|&k| b.tags[k] == tag && b.refs[k] == r) {
                b.tags[k] = 0;
                let mut j = home;
                while j != i {
                    self.buckets[j].passed -= 1;
                    j = (j + 1) & self.mask;
                }
                return true;
            }
            if b.passed == 0 {
                return false;
            }
            i = (i + 1) & self.mask;
        }
        false
    }

    /// Bytes the index takes.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.buckets.len() * core::mem::size_of::<Bucket>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::FlowKey;
    use core::net::Ipv4Addr;

    fn key(n: u32) -> FlowKey {
        FlowKey { proto: 17, src: Ipv4Addr::from(0x6400_0000 + (n >> 16)), dst: Ipv4Addr::new(198, 18, 0, 100), sport: n as u16, dport: 53 }
    }

    #[test]
    fn a_bucket_is_one_cache_line() {
        assert_eq!(core::mem::size_of::<Bucket>(), 64);
        assert_eq!(core::mem::align_of::<Bucket>(), 64);
        let t = TupleIndex::with_capacity(1000);
        assert_eq!(t.bytes(), 256 * 64, "1,000 entries at three quarters full: 167 buckets, rounded up");
        assert_eq!(TupleIndex::bytes_for(1000), t.bytes());
    }

    /// Against a model, in a table filled past its sizing (56 entries in
    /// 64 lanes) so that buckets fill and entries spill into the next ones: every entry is found while
    /// present and not after removal, and the `passed` counts are back to
    /// zero once it is empty.
    #[test]
    fn matches_a_model_through_inserts_and_removes() {
        let mut t = TupleIndex::with_capacity(40);
        let mut model = std::collections::HashSet::new();
        let mut rng = 0x1234_5678_u64;
        let mut spilled = false;
        for step in 0..20_000u32 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let n = (rng % 80) as u32;
            let h = t.hash(key(n).words());
            if model.contains(&n) {
                assert!(t.remove(h, n));
                model.remove(&n);
            } else if model.len() < 56 {
                assert!(t.insert(h, n));
                model.insert(n);
            }
            for m in 0..80u32 {
                let found = t.find(t.hash(key(m).words()), |r| r == m).is_some();
                assert_eq!(found, model.contains(&m), "entry {m} at step {step}");
            }
            spilled |= t.buckets.iter().any(|b| b.passed > 0);
        }
        assert!(spilled, "the test must make entries spill into later buckets");
        for n in model.iter().copied().collect::<Vec<_>>() {
            assert!(t.remove(t.hash(key(n).words()), n));
        }
        assert!(t.buckets.iter().all(|b| b.passed == 0 && b.tags == [0; LANES]));
    }

    #[test]
    fn the_tag_must_match_and_the_caller_decides() {
        let mut t = TupleIndex::with_capacity(8);
        let h = t.hash(key(1).words());
        assert!(t.insert(h, 7));
        assert_eq!(t.find(h, |r| r == 7), Some(7));
        assert_eq!(t.find(h, |_| false), None, "a tag match is not a hit");
        assert_eq!(t.candidate(h), Some(7));
        assert!(!t.remove(h, 8), "only the entry itself is removed");
        assert!(t.remove(h, 7));
        assert_eq!(t.find(h, |_| true), None);
        assert_eq!(t.candidate(h), None);
    }

    #[test]
    fn tagged_flags_exactly_the_matching_lanes() {
        let mut b = Bucket::default();
        for (k, t) in [(0, 5u16), (1, 7), (2, 5), (5, 5), (6, 0x8001), (7, 1)] {
            b.tags[k] = t;
        }
        let lanes = |t: u16| {
            let mut m = b.tagged(t);
            let mut v = Vec::new();
            while m != 0 {
                v.push(first_lane(m));
                m &= !(3 << (m.trailing_zeros() & !1));
            }
            v
        };
        assert_eq!(lanes(5), vec![0, 2, 5]);
        assert_eq!(lanes(7), vec![1]);
        assert_eq!(lanes(0x8001), vec![6]);
        assert_eq!(lanes(1), vec![7]);
        assert_eq!(lanes(9), Vec::<usize>::new());
        assert_eq!(lanes(0), vec![3, 4], "free lanes");
    }

    /// Tuples as traffic has them (one client's consecutive ports, many
    /// clients on one port, random, a few clients with many ports) spread
    /// like random ones: about e^-2 of the buckets empty at two entries per
    /// bucket, and none near overflowing.
    #[test]
    fn structured_tuples_spread_over_the_buckets() {
        let t = TupleIndex::with_capacity(2000);
        assert_eq!(t.buckets.len(), 512);
        let mut rng = 77u64;
        for family in 0..4 {
            let mut counts = vec![0u32; t.buckets.len()];
            for i in 0..1024u32 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let (src, sport, dport) = match family {
                    0 => (0x6400_0000, i as u16, 53),
                    1 => (0x6400_0000 + i, 40000, 80),
                    2 => (rng as u32, (rng >> 32) as u16, 80),
                    _ => (0x0a00_0000 + (i % 10), 1024 + (i / 10) as u16, 443),
                };
                let k = FlowKey { proto: 6, src: Ipv4Addr::from(src), dst: Ipv4Addr::new(198, 18, 0, 100), sport, dport };
                counts[t.home(t.hash(k.words()))] += 1;
            }
            let empty = counts.iter().filter(|&&c| c == 0).count();
            assert!(empty < 512 / 4, "family {family}: {empty} of 512 buckets empty (random: about 69)");
            assert!(counts.iter().all(|&c| c <= 12), "family {family}: a bucket with {:?}", counts.iter().max());
        }
    }

    #[test]
    fn different_tables_hash_differently() {
        let (a, b) = (TupleIndex::with_capacity(8), TupleIndex::with_capacity(8));
        assert!((0..8).any(|n| a.hash(key(n).words()) != b.hash(key(n).words())));
    }
}
