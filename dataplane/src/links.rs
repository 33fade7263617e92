//! The ports' link states as the control thread sees them. Reading a link
//! is a driver call (for some NICs a system call), so the control thread
//! does it, a few times a second, and publishes what changed here; each
//! worker compares the generation once per poll loop (a plain load) and
//! reads the states only when it moved.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug)]
pub struct LinkBoard {
    /// By the port's place among the workers' ports.
    up: Vec<AtomicBool>,
    generation: AtomicU64,
}

impl LinkBoard {
    /// The board with each port's link as first read.
    pub fn new(up: impl IntoIterator<Item = bool>) -> Self {
        LinkBoard { up: up.into_iter().map(AtomicBool::new).collect(), generation: AtomicU64::new(0) }
    }

    /// Records the link of the port at `place`; whether that changed it
    /// (a place beyond the board changes nothing).
    pub fn set(&self, place: usize, up: bool) -> bool {
        let Some(state) = self.up.get(place) else { return false };
        let changed = state.swap(up, Ordering::Relaxed) != up;
        if changed {
            // Release: a worker that sees the new generation sees the state.
            self.generation.fetch_add(1, Ordering::Release);
        }
        changed
    }

    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The link of the port at `place` (a place beyond the board: up, as
    /// a port nobody watches is assumed to be).
    pub fn is_up(&self, place: usize) -> bool {
        self.up.get(place).is_none_or(|s| s.load(Ordering::Relaxed))
    }

    pub fn len(&self) -> usize {
        self.up.len()
    }

    pub fn is_empty(&self) -> bool {
        self.up.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_change_moves_the_generation() {
        let b = LinkBoard::new([false, true]);
        assert_eq!((b.generation(), b.is_up(0), b.is_up(1)), (0, false, true));
        assert!(!b.set(1, true), "already up");
        assert_eq!(b.generation(), 0);
        assert!(b.set(0, true));
        assert_eq!((b.generation(), b.is_up(0)), (1, true));
        assert!(b.set(1, false));
        assert_eq!((b.generation(), b.is_up(1)), (2, false));
        assert!(!b.set(7, false), "no such port");
        assert!(b.is_up(7));
        assert_eq!(b.len(), 2);
    }
}
