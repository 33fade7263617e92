//! One real server as the schedulers see it: weight, connection counts,
//! thresholds and health.

use core::net::IpAddr;

/// Highest weight ipvsadm accepts.
pub const MAX_WEIGHT: u32 = 65535;

/// How a real server is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestConfig {
    /// Identity: Maglev's permutation is derived from it.
    pub addr: IpAddr,
    pub port: u16,
    /// 0..=65535; 0 = quiescent.
    pub weight: u32,
    /// ipvsadm `-x`: above this many connections (active + inactive) the
    /// server takes no new ones; 0 = no limit.
    pub upper_threshold: u32,
    /// ipvsadm `-y`: below this it takes new ones again; 0 = 3/4 of upper.
    pub lower_threshold: u32,
}

impl DestConfig {
    pub fn new(addr: IpAddr, port: u16, weight: u32) -> Self {
        DestConfig { addr, port, weight, upper_threshold: 0, lower_threshold: 0 }
    }
}

/// Live state of one real server within one core's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestState {
    pub config: DestConfig,
    pub active: u32,
    pub inactive: u32,
    /// Health: false after failed checks.
    pub available: bool,
    /// Set by the upper threshold, cleared by the lower one.
    pub overloaded: bool,
    /// Removed from the service; its index stays reserved so connections
    /// that name it remain valid.
    pub removed: bool,
}

impl DestState {
    pub(crate) fn new(config: DestConfig) -> Self {
        DestState { config, active: 0, inactive: 0, available: true, overloaded: false, removed: false }
    }

    pub fn weight(&self) -> u32 {
        if self.removed {
            0
        } else {
            self.config.weight
        }
    }

    /// May take new connections: weighted, healthy, under its threshold.
    #[inline]
    pub fn eligible(&self) -> bool {
        self.weight() > 0 && self.available && !self.overloaded
    }

    /// IPVS's connection overhead: active connections cost 256 times an
    /// inactive one.
    #[inline]
    pub fn overhead(&self) -> u64 {
        (u64::from(self.active) << 8) + u64::from(self.inactive)
    }

    pub fn total_connections(&self) -> u64 {
        u64::from(self.active) + u64::from(self.inactive)
    }

    /// Re-evaluates the threshold flag after the counts changed, with
    /// IPVS's hysteresis (`ip_vs_bind_dest`/`ip_vs_unbind_dest`).
    pub(crate) fn update_overload(&mut self) {
        let total = self.total_connections();
        let upper = u64::from(self.config.upper_threshold);
        let lower = u64::from(self.config.lower_threshold);
        if upper == 0 {
            self.overloaded = false;
        } else if total >= upper {
            self.overloaded = true;
        } else if self.overloaded {
            let resume = if lower != 0 { total < lower } else { total * 4 < upper * 3 };
            if resume {
                self.overloaded = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn dest(upper: u32, lower: u32) -> DestState {
        let mut c = DestConfig::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 80, 1);
        c.upper_threshold = upper;
        c.lower_threshold = lower;
        DestState::new(c)
    }

    #[test]
    fn upper_threshold_with_default_lower_hysteresis() {
        let mut d = dest(8, 0);
        for n in 1..=8 {
            d.active = n;
            d.update_overload();
            assert_eq!(d.overloaded, n >= 8, "at {n}");
        }
        // Resumes only below 3/4 of upper: 6 * 4 = 24 is not < 24.
        d.active = 6;
        d.update_overload();
        assert!(d.overloaded);
        d.active = 5;
        d.update_overload();
        assert!(!d.overloaded);
        assert!(d.eligible());
    }

    #[test]
    fn explicit_lower_threshold_and_inactive_count() {
        let mut d = dest(10, 2);
        d.active = 4;
        d.inactive = 6;
        d.update_overload();
        assert!(d.overloaded && !d.eligible());
        d.inactive = 0;
        d.active = 2;
        d.update_overload();
        assert!(d.overloaded, "2 is not below 2");
        d.active = 1;
        d.update_overload();
        assert!(!d.overloaded);
    }

    #[test]
    fn no_threshold_never_overloads_and_overhead_matches_ipvs() {
        let mut d = dest(0, 0);
        d.active = 1_000_000;
        d.inactive = 3;
        d.update_overload();
        assert!(!d.overloaded);
        assert_eq!(d.overhead(), 256_000_003);
        d.removed = true;
        assert_eq!(d.weight(), 0);
        assert!(!d.eligible());
    }
}
