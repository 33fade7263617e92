//! The kernel side of the exception path: rvsd gives each TAP interface
//! its data port's address, MTU and static routes, so the kernel's own
//! traffic (health checks, ssh, a routing daemon) uses the same addresses
//! and next hops as the data plane. Done with iproute2's `ip`, which every
//! Debian system has, rather than a netlink library.

use dataplane::config::Route;
use std::net::Ipv4Addr;
use std::process::Command;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("running ip {}: {e} (is iproute2 installed?)", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Brings the TAP `name` up with `addr/prefix_len` and `mtu`. IPv6 is
/// turned off on it: the data plane carries IPv4 only, and the kernel's
/// router solicitations would only be noise on the wire.
pub fn configure(name: &str, addr: Ipv4Addr, prefix_len: u8, mtu: u16) -> Result<(), String> {
    // Absent when the kernel has no IPv6: nothing to turn off then.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
    ip(&["link", "set", "dev", name, "mtu", &mtu.to_string(), "up"])?;
    ip(&["addr", "replace", &format!("{addr}/{prefix_len}"), "dev", name])
}

/// Makes the kernel's static routes those of `new` (after `old`): routes
/// that went are deleted, the others replaced; each through the TAP of
/// the interface its gateway is on (`tap_for`). Returns the errors (the
/// data plane's routes do not depend on these).
pub fn sync_routes(old: &[Route], new: &[Route], tap_for: impl Fn(Ipv4Addr) -> Option<String>) -> Vec<String> {
    let mut errors = Vec::new();
    // The network address: `ip` refuses a prefix with host bits set.
    let cidr = |r: &Route| format!("{}/{}", Ipv4Addr::from(u32::from(r.prefix) & dataplane::config::prefix_mask(r.prefix_len)), r.prefix_len);
    for r in old.iter().filter(|r| !new.contains(r)) {
        if let Err(e) = ip(&["route", "del", &cidr(r), "via", &r.via.to_string()]) {
            errors.push(e);
        }
    }
    for r in new {
        let Some(dev) = tap_for(r.via) else { continue };
        if let Err(e) = ip(&["route", "replace", &cidr(r), "via", &r.via.to_string(), "dev", &dev]) {
            errors.push(e);
        }
    }
    errors
}
