//! Ethernet ports: setup, rx/tx bursts, MAC, link and statistics.

use super::{Burst, DpdkError, Mempool};
use proto::MacAddr;
use std::ffi::CString;

/// A configured DPDK port.
#[derive(Debug)]
pub struct Port {
    id: u16,
    name: String,
    started: bool,
    /// Whether to have the device check received IPv4 header checksums
    /// where it can (not for a TAP: what the kernel sends goes out
    /// unchanged, nobody reads the verdict), and whether it does (enabled
    /// at start).
    wants_ip_checksums: bool,
    checks_ip_checksums: bool,
}

/// ethdev's `RTE_ETH_RX_OFFLOAD_IPV4_CKSUM` (`RTE_BIT64(1)`: a macro
/// bindgen does not expand).
const RX_OFFLOAD_IPV4_CKSUM: u64 = 1 << 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    pub speed_mbps: u32,
}

/// The driver's counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

impl Port {
    /// Finds a port by device name (`net_af_packet0`, a PCI address, ...).
    pub fn by_name(_eal: &super::Eal, name: &str) -> Result<Port, DpdkError> {
        let c = CString::new(name).map_err(|_| DpdkError::new("port name contains NUL", 22))?;
        let mut id = 0u16;
        // SAFETY: valid C string and out-pointer; EAL initialised.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        if rc != 0 {
            // Debian ships DPDK's AF_XDP driver in a package of its own;
            // without it the EAL only logs that the vdev failed to probe.
            let hint = if name.starts_with("net_af_xdp") {
                "is its --vdev in eal_args, and DPDK's AF_XDP driver installed (Debian: librte-net-af-xdp23)?"
            } else {
                "is its --vdev or PCI device in eal_args?"
            };
            return Err(DpdkError::new(format!("finding DPDK port {name:?} ({hint})"), rc));
        }
        Ok(Port { id, name: name.to_string(), started: false, wants_ip_checksums: true, checks_ip_checksums: false })
    }

    /// Creates a kernel TAP interface `kernel_name` with the MAC `mac`
    /// (DPDK's `net_tap`, probed after EAL start so it can take the MAC of
    /// the data port it serves) and returns its port, not yet started.
    /// `index` makes the device name unique within rvsd.
    pub fn create_tap(eal: &super::Eal, index: usize, kernel_name: &str, mac: MacAddr) -> Result<Port, DpdkError> {
        let name = format!("net_tap_rvs{index}");
        let devargs = format!("{name},iface={kernel_name},mac={mac}");
        let c = CString::new(devargs.clone()).map_err(|_| DpdkError::new("TAP arguments contain NUL", 22))?;
        // SAFETY: valid C string; EAL initialised; called from the main thread.
        let rc = unsafe { dpdk_sys::rte_dev_probe(c.as_ptr()) };
        if rc != 0 {
            return Err(DpdkError::new(format!("creating the TAP device {devargs:?} (needs /dev/net/tun and CAP_NET_ADMIN)"), rc));
        }
        let mut tap = Self::by_name(eal, &name)?;
        tap.wants_ip_checksums = false;
        Ok(tap)
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Configures `queues` rx and tx queue pairs (one per worker) with
    /// `rx_desc`/`tx_desc` descriptors, receiving into `pool`, and starts it.
    pub fn start(&mut self, queues: u16, rx_desc: u16, tx_desc: u16, pool: &Mempool) -> Result<(), DpdkError> {
        let id = self.id;
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: valid port id and out-pointer.
        let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
        if rc != 0 {
            return Err(DpdkError::new(format!("rte_eth_dev_info_get({})", self.name), rc));
        }
        if queues > info.max_rx_queues || queues > info.max_tx_queues {
            return Err(DpdkError::new(
                format!("port {} supports {} rx / {} tx queues, {} workers need {queues}", self.name, info.max_rx_queues, info.max_tx_queues, queues),
                22,
            ));
        }
        let mut conf = dpdk_sys::rte_eth_conf::default();
        // Where the device checks IPv4 header checksums, the pipeline
        // takes its verdict instead of checking again (about 15
        // instructions a packet: see `Mbuf::ip_checksum_good`).
        if self.wants_ip_checksums && info.rx_offload_capa & RX_OFFLOAD_IPV4_CKSUM != 0 {
            conf.rxmode.offloads |= RX_OFFLOAD_IPV4_CKSUM;
        }
        if queues > 1 && info.flow_type_rss_offloads != 0 {
            conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads;
        }
        // SAFETY: valid port and configuration struct.
        let rc = unsafe { dpdk_sys::rte_eth_dev_configure(id, queues, queues, &conf) };
        if rc != 0 {
            return Err(DpdkError::new(format!("rte_eth_dev_configure({})", self.name), rc));
        }
        let (mut rxd, mut txd) = (rx_desc, tx_desc);
        // SAFETY: valid port; in/out descriptor counts.
        let rc = unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rxd, &mut txd) };
        if rc != 0 {
            return Err(DpdkError::new(format!("rte_eth_dev_adjust_nb_rx_tx_desc({})", self.name), rc));
        }
        // SAFETY: valid port.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) }.max(0) as u32;
        for q in 0..queues {
            // SAFETY: configured port, queue in range, live pool; NULL conf = defaults.
            let rc = unsafe { dpdk_sys::rte_eth_rx_queue_setup(id, q, rxd, socket, std::ptr::null(), pool.as_ptr()) };
            if rc != 0 {
                return Err(DpdkError::new(format!("rx queue {q} setup on {}", self.name), rc));
            }
            // SAFETY: configured port, queue in range; NULL conf = defaults.
            let rc = unsafe { dpdk_sys::rte_eth_tx_queue_setup(id, q, txd, socket, std::ptr::null()) };
            if rc != 0 {
                return Err(DpdkError::new(format!("tx queue {q} setup on {}", self.name), rc));
            }
        }
        // SAFETY: configured port with all queues set up.
        let rc = unsafe { dpdk_sys::rte_eth_dev_start(id) };
        if rc != 0 {
            return Err(DpdkError::new(format!("rte_eth_dev_start({})", self.name), rc));
        }
        self.started = true;
        self.checks_ip_checksums = conf.rxmode.offloads & RX_OFFLOAD_IPV4_CKSUM != 0;
        Ok(())
    }

    /// Whether the started device checks the IPv4 header checksums of the
    /// frames it receives (and says so in each mbuf's flags).
    pub fn checks_ip_checksums(&self) -> bool {
        self.checks_ip_checksums
    }

    pub fn mac(&self) -> Result<MacAddr, DpdkError> {
        let mut a = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid port and out-pointer.
        let rc = unsafe { dpdk_sys::rte_eth_macaddr_get(self.id, &mut a) };
        if rc != 0 {
            return Err(DpdkError::new(format!("rte_eth_macaddr_get({})", self.name), rc));
        }
        Ok(MacAddr(a.addr_bytes))
    }

    pub fn link(&self) -> LinkStatus {
        let mut l = dpdk_sys::rte_eth_link::default();
        // SAFETY: valid port and out-pointer; does not wait.
        let rc = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id, &mut l) };
        LinkStatus { up: rc == 0 && l.link_status() != 0, speed_mbps: l.link_speed }
    }

    /// Sets the link administratively up or down (where the driver can).
    pub fn set_link(&self, up: bool) -> Result<(), DpdkError> {
        // SAFETY: a valid, started port.
        let rc = unsafe {
            if up {
                dpdk_sys::rte_eth_dev_set_link_up(self.id)
            } else {
                dpdk_sys::rte_eth_dev_set_link_down(self.id)
            }
        };
        if rc != 0 {
            return Err(DpdkError::new(format!("rte_eth_dev_set_link_{}({})", if up { "up" } else { "down" }, self.name), rc));
        }
        Ok(())
    }

    pub fn stats(&self) -> PortStats {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: valid port and out-pointer.
        unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) };
        PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }

    /// The driver's extended statistics (name, value), as many as it has.
    /// For the control thread (metrics), never the packet path.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        // SAFETY: a null array with size 0 asks only for the count.
        let n = unsafe { dpdk_sys::rte_eth_xstats_get_names(self.id, core::ptr::null_mut(), 0) };
        let Ok(n) = usize::try_from(n) else { return Vec::new() };
        let mut names = vec![dpdk_sys::rte_eth_xstat_name::default(); n];
        let mut values = vec![dpdk_sys::rte_eth_xstat::default(); n];
        // SAFETY: both arrays hold `n` elements, the size passed.
        let (got_names, got_values) = unsafe {
            (dpdk_sys::rte_eth_xstats_get_names(self.id, names.as_mut_ptr(), n as u32), dpdk_sys::rte_eth_xstats_get(self.id, values.as_mut_ptr(), n as u32))
        };
        // A count that changed between the calls (or an error): no answer this time.
        if got_names != n as i32 || got_values != n as i32 {
            return Vec::new();
        }
        values
            .iter()
            .filter_map(|v| {
                let name = names.get(usize::try_from(v.id).ok()?)?;
                // SAFETY: DPDK writes NUL-terminated names into the 64-byte field.
                let name = unsafe { core::ffi::CStr::from_ptr(name.name.as_ptr()) };
                Some((name.to_string_lossy().into_owned(), v.value))
            })
            .collect()
    }

    /// Receives up to `max` packets from `queue` into the (empty) `burst`.
    #[inline]
    pub fn rx(&self, queue: u16, burst: &mut Burst, max: usize) -> usize {
        let (slots, n) = burst.rx_slots(max);
        // SAFETY: started port; `slots` has room for n pointers; each
        // returned mbuf becomes owned by the burst.
        let got = unsafe { dpdk_sys::rte_eth_rx_burst(self.id, queue, slots, n) };
        burst.rx_filled(got);
        usize::from(got)
    }

    /// Sends what `burst` holds on `queue`. The driver owns what it accepted;
    /// the unsent rest is freed. Returns (sent, freed unsent); the burst is
    /// empty afterwards.
    #[inline]
    pub fn tx(&self, queue: u16, burst: &mut Burst) -> (usize, usize) {
        let (slots, n) = burst.tx_slots();
        if n == 0 {
            return (0, 0);
        }
        // SAFETY: started port; slots holds n owned mbufs; the driver takes
        // ownership of the first `sent`, which the burst then forgets.
        let sent = unsafe { dpdk_sys::rte_eth_tx_burst(self.id, queue, slots, n) };
        let unsent = burst.tx_done(sent);
        (usize::from(sent), unsent)
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if self.started {
            // SAFETY: valid port; workers using it have been joined.
            unsafe {
                dpdk_sys::rte_eth_dev_stop(self.id);
                dpdk_sys::rte_eth_dev_close(self.id);
            }
        }
    }
}
