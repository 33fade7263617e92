//! Round robin: each eligible server in turn, weights ignored except that
//! weight 0 (quiescent) servers are skipped, as IPVS's `rr` does.

use crate::dest::DestState as Dest;

#[derive(Debug, Clone, Default)]
pub(crate) struct RoundRobin {
    /// Index of the last pick; the next search starts after it.
    last: Option<usize>,
}

impl RoundRobin {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn pick(&mut self, dests: &[Dest]) -> Option<usize> {
        let n = dests.len();
        if n == 0 {
            return None;
        }
        // A cursor past a shortened list restarts from the head.
        let start = match self.last {
            Some(l) if l < n => (l + 1) % n,
            _ => 0,
        };
        for k in 0..n {
            let i = (start + k) % n;
            if dests[i].eligible() {
                self.last = Some(i);
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_and_skips_quiescent() {
        let mut d = vec![crate::tests::dest(1), crate::tests::dest(5), crate::tests::dest(1)];
        let mut s = RoundRobin::new();
        let picks: Vec<_> = (0..6).map(|_| s.pick(&d).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        d[1].config.weight = 0;
        let picks: Vec<_> = (0..4).map(|_| s.pick(&d).unwrap()).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
    }

    #[test]
    fn survives_a_shrinking_server_list() {
        let d = vec![crate::tests::dest(1); 5];
        let mut s = RoundRobin::new();
        for _ in 0..5 {
            s.pick(&d);
        }
        assert_eq!(s.pick(&d[..2]), Some(0));
    }
}
