//! Shared by the end-to-end tests: a namespace topology with real kernel
//! stacks (scripts/topology.sh), rvsd on `net_af_packet`, real servers and
//! clients (scripts/*.py). Needs root. A `Lab` guard tears everything down,
//! also when a test fails.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One topology at a time: the machine has two cores.
pub(crate) static SERIAL: Mutex<()> = Mutex::new(());

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub(crate) fn script(name: &str) -> PathBuf {
    repo().join("scripts").join(name)
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

pub(crate) fn require_root() {
    let out = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "end-to-end tests need root (network namespaces)");
}

/// A topology plus the processes running in it; dropping it kills them and
/// deletes the namespaces.
pub(crate) struct Lab {
    pub(crate) prefix: String,
    pub(crate) dir: PathBuf,
    children: Vec<Child>,
    /// Real servers started one by one, by namespace ("rs1"), so a test
    /// can kill one.
    servers: Vec<(String, Child)>,
    rvsd: Option<Child>,
    /// The VIP clients use, and the client's own address.
    pub(crate) vip: &'static str,
    pub(crate) client_addr: &'static str,
}

impl Lab {
    pub(crate) fn ns_name(&self, host: &str) -> String {
        self.ns(host)
    }

    /// The DR topology: one L2 segment.
    pub(crate) fn up(prefix: &str) -> Lab {
        Self::up_kind(prefix, "dr")
    }

    /// `kind`: "dr" or "nat" (see scripts/topology.sh).
    pub(crate) fn up_kind(prefix: &str, kind: &str) -> Lab {
        require_root();
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (vip, client_addr) = if kind == "dr" { ("198.18.0.100", "198.18.0.10") } else { ("198.18.1.100", "198.18.1.10") };
        let lab = Lab { prefix: prefix.to_string(), dir, children: Vec::new(), servers: Vec::new(), rvsd: None, vip, client_addr };
        run(Command::new("bash").arg(script("topology.sh")).args(["up", prefix, kind]));
        lab
    }

    pub(crate) fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    pub(crate) fn exec(&self, host: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)]);
        c
    }

    pub(crate) fn start_real_servers(&mut self) {
        self.start_real_servers_on(80);
    }

    /// The userspace IPIP endpoint on both real servers (TUN mode).
    pub(crate) fn start_decapsulators(&mut self) {
        for rs in ["rs1", "rs2"] {
            let child = self.exec(rs).args(["python3", script("ipip_decap.py").to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
            self.children.push(child);
        }
    }

    pub(crate) fn start_real_servers_on(&mut self, http_port: u16) {
        for rs in ["rs1", "rs2"] {
            self.start_real_server(rs, http_port);
        }
    }

    /// Starts realserver.py on one real server (`"rs1"`), killable with
    /// [`Self::kill_real_server`].
    pub(crate) fn start_real_server(&mut self, rs: &str, http_port: u16) {
        let child = self
            .exec(rs)
            .args(["python3", script("realserver.py").to_str().unwrap(), rs, &http_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.servers.push((rs.to_string(), child));
    }

    /// Makes `child` the lab's: killed when the lab goes, also on failure.
    pub(crate) fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }

    /// Kills the real server process(es) started on `rs`.
    pub(crate) fn kill_real_server(&mut self, rs: &str) {
        for (_, mut c) in self.servers.extract_if(.., |(name, _)| name == rs) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The usual start of a DR test: topology `prefix` up, both real
    /// servers, rvsd on the demo config with `scheduler`, `weights` and
    /// `workers` worker lcores.
    pub(crate) fn serving(prefix: &str, weights: (u32, u32), scheduler: &str, workers: u32) -> Lab {
        let mut lab = Lab::up(prefix);
        lab.start_real_servers();
        let cfg = lab.config_full(weights, scheduler, workers);
        lab.start_rvsd(&cfg);
        lab
    }

    pub(crate) fn config(&self, weights: (u32, u32)) -> PathBuf {
        self.config_with(weights, "wrr")
    }

    /// The demo config with the TCP service's scheduler replaced.
    pub(crate) fn config_with(&self, weights: (u32, u32), scheduler: &str) -> PathBuf {
        self.config_full(weights, scheduler, 1)
    }

    /// ... and `workers` worker lcores, each with its own af_packet queue pair.
    pub(crate) fn config_full(&self, weights: (u32, u32), scheduler: &str, workers: u32) -> PathBuf {
        // Two CPUs here: extra worker lcores share CPU 1 (they sleep when idle).
        let lcores = (1..=workers).map(|l| format!("{l}@1")).collect::<Vec<_>>().join(",");
        let text = std::fs::read_to_string(repo().join("configs/demo.toml"))
            .unwrap()
            .replace("@FILE_PREFIX@", &format!("{}-{}", self.prefix, std::process::id()))
            .replace("weight = 1\n", &format!("weight = {}\n", weights.0))
            .replace("weight = 2\n", &format!("weight = {}\n", weights.1))
            .replace("scheduler = \"wrr\"", &format!("scheduler = \"{scheduler}\""))
            .replace("\"-l\", \"0-1\"", &format!("\"--lcores\", \"0@0,{lcores}\""))
            .replace("iface=eth0\"", &format!("iface=eth0,qpairs={workers}\""));
        let path = self.dir.join("rvs.toml");
        std::fs::write(&path, self.with_admin(&text)).unwrap();
        path
    }

    /// The admin socket of this lab's rvsd.
    pub(crate) fn admin_socket(&self) -> PathBuf {
        self.dir.join("rvsd.sock")
    }

    /// `text` with this lab's admin socket (never the system one).
    pub(crate) fn with_admin(&self, text: &str) -> String {
        format!("{text}\n[admin]\nsocket = \"{}\"\n", self.admin_socket().display())
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("rvsd.log")).unwrap_or_default()
    }

    /// Starts rvsd in the LB namespace and waits until it runs and the VIP answers.
    pub(crate) fn start_rvsd(&mut self, config: &Path) {
        self.start_rvsd_quiet(config);
        // The first requests may race ARP resolution and server start-up.
        let t = Instant::now();
        loop {
            if self.client("http", 1).iter().all(|l| l.starts_with("ok ")) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(15), "the VIP never answered:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `check` holds, at most `limit`; else panics saying
    /// `what`, with rvsd's log.
    pub(crate) fn wait_until(&self, what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
        let t = Instant::now();
        while !check() {
            assert!(t.elapsed() < limit, "{what} (waited {limit:?}):\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until rvsd's log says `needle`, at most `limit`.
    pub(crate) fn wait_log(&self, needle: &str, limit: Duration) {
        self.wait_until(&format!("no {needle:?}"), limit, || self.log().contains(needle));
    }

    /// Starts rvsd and waits until it runs, sending no traffic.
    pub(crate) fn start_rvsd_quiet(&mut self, config: &Path) {
        let log = std::fs::File::create(self.dir.join("rvsd.log")).unwrap();
        let child = self.exec("lb").arg(env!("CARGO_BIN_EXE_rvsd")).arg("--config").arg(config).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.rvsd = Some(child);
        let t = Instant::now();
        while !self.log().contains("running:") {
            if let Some(status) = self.rvsd.as_mut().unwrap().try_wait().unwrap() {
                panic!("rvsd exited with {status} during start:\n{}", self.log());
            }
            assert!(t.elapsed() < Duration::from_secs(20), "rvsd did not start:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn rvsd_pid(&self) -> u32 {
        self.rvsd.as_ref().expect("rvsd running").id()
    }

    /// Stops rvsd with SIGTERM; returns its log after checking a clean exit.
    pub(crate) fn stop_rvsd(&mut self) -> String {
        let mut child = self.rvsd.take().expect("rvsd running");
        run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
        let t = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "rvsd ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = self.log();
        assert!(status.success(), "rvsd exit status {status}:\n{log}");
        assert!(log.contains("rvsd info: stopped"), "{log}");
        log
    }

    /// Runs `client.py KIND VIP N [EXTRA..]` in the client namespace; one
    /// line per request.
    pub(crate) fn client(&self, kind: &str, n: usize) -> Vec<String> {
        self.client_args(kind, n, &[])
    }

    pub(crate) fn client_args(&self, kind: &str, n: usize, extra: &[&str]) -> Vec<String> {
        let out = run(self.exec("cl").args(["python3", script("client.py").to_str().unwrap(), kind, self.vip, &n.to_string()]).args(extra));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    /// Runs rvsadm against this lab's rvsd.
    pub(crate) fn rvsadm_output(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rvsadm")).args(args).arg("--socket").arg(self.admin_socket()).output().unwrap()
    }

    /// ... and returns what it printed, after checking it succeeded.
    pub(crate) fn rvsadm(&self, args: &[&str]) -> String {
        let out = self.rvsadm_output(args);
        assert!(out.status.success(), "rvsadm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Scrapes /metrics inside the LB namespace; returns the samples as
    /// parsed by prometheus_client ("name{labels}" -> value), after
    /// checking that the whole text parses.
    pub(crate) fn scrape(&self) -> HashMap<String, f64> {
        let text = run(self.exec("lb").args(["curl", "-sf", "http://127.0.0.1:9100/metrics"])).stdout;
        let mut check = Command::new("python3").arg(script("check_metrics.py")).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        check.stdin.take().unwrap().write_all(&text).unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(out.status.success(), "the exposition does not parse:\n{}", String::from_utf8_lossy(&text));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').unwrap();
                (k.to_string(), v.parse().unwrap())
            })
            .collect()
    }

    /// A config from `configs/NAME` with the file prefix filled in.
    pub(crate) fn config_file(&self, name: &str) -> PathBuf {
        self.config_file_workers(name, 1)
    }

    /// ... with `extra` appended (more services).
    pub(crate) fn config_file_plus(&self, name: &str, extra: &str) -> PathBuf {
        let path = self.config_file(name);
        let text = std::fs::read_to_string(&path).unwrap() + extra;
        std::fs::write(&path, text).unwrap();
        path
    }

    /// ... on DPDK's AF_XDP driver (`net_af_xdp`: an XDP socket on each
    /// veth) instead of af_packet.
    pub(crate) fn config_file_af_xdp(&self, name: &str) -> PathBuf {
        let path = self.config_file(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("net_af_packet"), "{name} has no af_packet device to replace");
        std::fs::write(&path, text.replace("net_af_packet", "net_af_xdp")).unwrap();
        path
    }

    /// ... with `workers` worker lcores (sharing CPU 1) and as many
    /// af_packet queue pairs on every port.
    pub(crate) fn config_file_workers(&self, name: &str, workers: u32) -> PathBuf {
        let lcores = (1..=workers).map(|l| format!("{l}@1")).collect::<Vec<_>>().join(",");
        let mut text =
            std::fs::read_to_string(repo().join("configs").join(name)).unwrap().replace("@FILE_PREFIX@", &format!("{}-{}", self.prefix, std::process::id()));
        if workers > 1 {
            text = text
                .replace("\"-l\", \"0-1\"", &format!("\"--lcores\", \"0@0,{lcores}\""))
                .replace("iface=eth0\"", &format!("iface=eth0,qpairs={workers}\""))
                .replace("iface=eth1\"", &format!("iface=eth1,qpairs={workers}\""))
                .replace("count = 1", &format!("count = {workers}"));
        }
        let path = self.dir.join("rvs.toml");
        std::fs::write(&path, self.with_admin(&text)).unwrap();
        path
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.rvsd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for c in self.children.iter_mut().chain(self.servers.iter_mut().map(|(_, c)| c)) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("bash").arg(script("topology.sh")).args(["down", &self.prefix]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
        // DPDK's runtime directory of the rvsd this lab ran (its
        // `--file-prefix`): killed, rvsd leaves it behind, and every run
        // of the suite would add one per lab.
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}-{}", self.prefix, std::process::id()));
    }
}

/// Drops that a clean NAT or FullNAT run through the VIP must not have.
pub(crate) const FORWARDING_DROPS: [&str; 6] =
    ["drop_malformed_frame", "drop_malformed_ipv4", "drop_malformed_l4", "drop_neighbor_unresolved", "drop_tx_queue_full", "drop_conn_table_full"];

/// Counts answers per server and checks each saw the DR client's address.
pub(crate) fn tally(lines: &[String]) -> BTreeMap<String, usize> {
    tally_from(lines, "198.18.0.10")
}

/// Counts answers per server and checks each saw `client`.
pub(crate) fn tally_from(lines: &[String], client: &str) -> BTreeMap<String, usize> {
    let mut by_server = BTreeMap::new();
    for l in lines {
        assert!(l.starts_with("ok "), "a request failed: {l}");
        let server = l.split_whitespace().find_map(|w| w.strip_prefix("server=")).expect("server= in answer");
        let found_client = l.split_whitespace().find_map(|w| w.strip_prefix("client=")).expect("client= in answer");
        assert_eq!(found_client, client, "the server must see the client's address: {l}");
        *by_server.entry(server.to_string()).or_insert(0) += 1;
    }
    by_server
}

/// `key=` summed over every worker's final `stats lcore=` line.
pub(crate) fn stat_all(log: &str, key: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("stats lcore="))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))))
        .map(|v| v.parse::<u64>().unwrap())
        .sum()
}

/// The value of `key=` in the final `stats lcore=` line of the log.
pub(crate) fn stat(log: &str, key: &str) -> u64 {
    let line = log.lines().rfind(|l| l.contains("stats lcore=")).expect("stats line");
    line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))).map_or(0, |v| v.parse().unwrap())
}

pub(crate) fn namespaces_with(prefix: &str) -> usize {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with(&format!("{prefix}-"))).count()
}

/// The sum of the samples of `name` whose labels contain every `want`
/// (`"label=value"`), from [`Lab::scrape`].
pub(crate) fn sum(m: &HashMap<String, f64>, name: &str, want: &[&str]) -> f64 {
    m.iter().filter(|(k, _)| k.starts_with(&format!("{name}{{")) && want.iter().all(|w| k.contains(w))).map(|(_, v)| v).sum()
}
