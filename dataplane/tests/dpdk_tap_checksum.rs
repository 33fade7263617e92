//! Receive checksum offload with a real driver: a TAP device (net_tap
//! checks IPv4 header checksums in its driver when asked, as a NIC does in
//! hardware) started by `Port::start` has the offload on, and the frames
//! the kernel sends through it arrive with the verdict `Mbuf` reads: good
//! for a right checksum, not good for a wrong one. Needs root (a TAP
//! device, a raw socket).

use dataplane::dpdk::{Burst, Eal, Mempool, Port};
use std::ffi::CString;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::RuntimeDir;

/// A UDP datagram to 198.18.0.2:9 carrying `marker`, in an Ethernet frame
/// to `dst`; its IPv4 header checksum made wrong if `spoil`.
fn frame(dst: [u8; 6], marker: &[u8], spoil: bool) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x42], dst)
        .ipv4([198, 18, 0, 10], [198, 18, 0, 2], 64)
        .udp(40000, 9)
        .write(&mut f, marker)
        .expect("builds");
    if spoil {
        f[14 + 8] = 1; // the TTL: the checksum no longer matches
    }
    f
}

/// Sends `frames` out of the kernel interface `ifname` (to the TAP device
/// behind it) through a raw packet socket.
fn send_from_kernel(ifname: &str, frames: &[Vec<u8>]) {
    let name = CString::new(ifname).unwrap();
    // SAFETY: plain socket calls on a socket this function owns and closes;
    // the address is a fully initialized sockaddr_ll.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr());
        assert!(ifindex > 0, "interface {ifname}");
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(fd >= 0, "raw socket (run as root)");
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        for f in frames {
            addr.sll_addr[..6].copy_from_slice(&f[..6]);
            let sent =
                libc::sendto(fd, f.as_ptr().cast(), f.len(), 0, (&addr as *const libc::sockaddr_ll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32);
            assert_eq!(sent, f.len() as isize, "sendto on {ifname}");
        }
        libc::close(fd);
    }
}

#[test]
fn a_tap_devices_checksum_verdict_reaches_the_mbuf() {
    let dir = RuntimeDir::new("tapchk");
    let ifname = format!("rvsck{}", std::process::id() % 100_000);
    let args: Vec<String> = ["-l", "0", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry", "--log-level", "error"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--file-prefix={}", dir.prefix()), format!("--vdev=net_tap7,iface={ifname}")])
        .collect();
    let eal = Eal::init(&args).expect("EAL init (is DPDK installed? run as root)");
    let pool = Mempool::new(&eal, "tapchk_pool", 1023, 0).unwrap();
    let mut port = Port::by_name(&eal, "net_tap7").unwrap();
    port.start(1, 256, 256, &pool).unwrap();
    assert!(port.checks_ip_checksums(), "net_tap offers the offload, and a data port turns it on");
    let mac = port.mac().unwrap().0;
    assert!(Command::new("ip").args(["link", "set", "dev", &ifname, "up"]).status().unwrap().success());

    let (good, bad) = (frame(mac, b"rvs-good", false), frame(mac, b"rvs-bad!", true));
    // The verdicts of our two frames, as they come (the kernel may send
    // its own frames too: IPv6 router solicitations and the like).
    let (mut good_verdict, mut bad_verdict) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut rx = Burst::new();
    while (good_verdict.is_none() || bad_verdict.is_none()) && Instant::now() < deadline {
        send_from_kernel(&ifname, &[good.clone(), bad.clone()]);
        std::thread::sleep(Duration::from_millis(20));
        port.rx(0, &mut rx, 32);
        for m in rx.drain() {
            if m.data() == good.as_slice() {
                good_verdict = Some(m.ip_checksum_good());
            } else if m.data() == bad.as_slice() {
                bad_verdict = Some(m.ip_checksum_good());
            }
        }
    }
    assert_eq!(good_verdict, Some(true), "a right checksum arrives checked and good");
    assert_eq!(bad_verdict, Some(false), "a wrong one does not count as good");
    drop(port);
}
