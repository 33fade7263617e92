//! rvsadm: look at a running rvsd the way ipvsadm looks at IPVS, through
//! rvsd's admin socket.

use clap::Parser;
use control::admin::{self, Listing};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "rvsadm", version, about = "Show RVS's virtual services, real servers and counters (ipvsadm style)")]
struct Args {
    /// List the virtual services and their real servers.
    #[arg(short = 'L', long = "list", short_alias = 'l')]
    list: bool,
    /// Numeric output (always numeric; accepted for ipvsadm habits).
    #[arg(short = 'n', long = "numeric")]
    numeric: bool,
    /// Connections and traffic counters.
    #[arg(long)]
    stats: bool,
    /// Rates over the last second.
    #[arg(long)]
    rate: bool,
    /// The TCP, TCP FIN and UDP timeouts.
    #[arg(long)]
    timeout: bool,
    /// The connection entries (ipvsadm -Lnc); FullNAT ones with their local address.
    #[arg(short = 'c', long = "connection")]
    connection: bool,
    /// The neighbor (ARP) table of the next hops, like `ip neigh`.
    #[arg(long)]
    neighbors: bool,
    /// Machine-readable output (everything rvsd reported).
    #[arg(long)]
    json: bool,
    /// rvsd's admin socket.
    #[arg(long, value_name = "PATH", default_value = admin::DEFAULT_SOCKET)]
    socket: PathBuf,
}

fn addr(a: &str, port: u16) -> String {
    format!("{a}:{port}")
}

fn service_line(s: &admin::Service) -> String {
    let mut flags = String::new();
    if let Some(t) = s.persistent {
        flags.push_str(&format!(" persistent {t}"));
    }
    if s.retired {
        flags.push_str(" (removed, draining)");
    }
    format!("{:<4} {} {}{flags}", s.proto, addr(&s.vip, s.port), s.scheduler)
}

/// `ipvsadm -Ln`, and how the last reload went.
fn list(l: &Listing) -> String {
    let mut o = format!("RVS {} (connections={}/{})\n", env!("CARGO_PKG_VERSION"), l.connections, l.capacity);
    // A health column only when some server is checked: ipvsadm has none.
    let checked = l.services.iter().flat_map(|s| &s.reals).any(|r| r.health.is_some());
    o.push_str("Prot LocalAddress:Port Scheduler Flags\n");
    o.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn");
    o.push_str(if checked { " Health\n" } else { "\n" });
    for s in &l.services {
        o.push_str(&service_line(s));
        o.push('\n');
        for r in &s.reals {
            let mut row = format!("  -> {:<28} {:<7} {:<6} {:<10} {}", addr(&r.addr, r.port), s.forward, r.weight, r.active, r.inactive);
            if let Some(h) = &r.health {
                row = format!("{row:<69} {h}");
                if let Some(e) = &r.health_error {
                    row.push_str(&format!(" ({e})"));
                }
            }
            o.push_str(row.trim_end());
            o.push('\n');
        }
    }
    if let Some(r) = &l.last_reload {
        o.push_str(&format!("last reload: {r}\n"));
    }
    o
}

/// `ipvsadm -Ln --stats`.
fn stats(l: &Listing) -> String {
    let mut o = String::from("Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n");
    o.push_str("  -> RemoteAddress:Port\n");
    for s in &l.services {
        let (c, pi, po, bi, bo) = s.totals();
        o.push_str(&format!("{:<4} {:<28} {:>8} {:>8} {:>8} {:>8} {:>8}\n", s.proto, addr(&s.vip, s.port), c, pi, po, bi, bo));
        for r in &s.reals {
            o.push_str(&format!("  -> {:<28} {:>8} {:>8} {:>8} {:>8} {:>8}\n", addr(&r.addr, r.port), r.conns, r.pkts_in, r.pkts_out, r.bytes_in, r.bytes_out));
        }
    }
    o
}

/// `ipvsadm -Ln --rate`.
fn rate(l: &Listing) -> String {
    let mut o = String::from("Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n");
    o.push_str("  -> RemoteAddress:Port\n");
    let row = |r: &admin::Rates| format!("{:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0}", r.cps, r.in_pps, r.out_pps, r.in_bps, r.out_bps);
    for s in &l.services {
        o.push_str(&format!("{:<4} {:<28} {}\n", s.proto, addr(&s.vip, s.port), row(&s.rates)));
        for r in &s.reals {
            o.push_str(&format!("  -> {:<28} {}\n", addr(&r.addr, r.port), row(&r.rates)));
        }
    }
    o
}

/// `ipvsadm -Lnc`.
fn connections(l: &Listing) -> String {
    let fullnat = l.entries.iter().any(|c| c.local.is_some());
    let mut o = String::from("RVS connection entries\n");
    o.push_str(&format!("pro expire state       {:<21} {:<21} ", "source", "virtual"));
    o.push_str(&if fullnat { format!("{:<21} destination\n", "local") } else { "destination\n".into() });
    for c in &l.entries {
        let expire = format!("{:02}:{:02}", c.expires / 60, c.expires % 60);
        o.push_str(&format!("{:<3} {:<6} {:<11} {:<21} {:<21} ", c.proto, expire, c.state, c.client, c.virt));
        if fullnat {
            o.push_str(&format!("{:<21} ", c.local.as_deref().unwrap_or("-")));
        }
        o.push_str(&c.real);
        o.push('\n');
    }
    if l.entries_truncated {
        o.push_str("(some workers have more connections than they list: see --json and the connection count in -Ln)\n");
    }
    o
}

/// `rvsadm --neighbors`.
fn neighbors(l: &Listing) -> String {
    let mut o = String::from("Address          Port MAC               State      Age(s)\n");
    for n in &l.neighbors {
        let age = n.age.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        let mac = n.mac.as_deref().unwrap_or("-");
        o.push_str(&format!("{:<16} {:<4} {:<17} {:<10} {}\n", n.addr, n.port, mac, n.state, age));
    }
    o
}

fn main() -> ExitCode {
    let args = Args::parse();
    let _ = args.numeric;
    let cmd = if args.timeout {
        "timeout"
    } else if args.connection {
        "connections"
    } else {
        "list"
    };
    let l = match admin::ask(&args.socket, cmd) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rvsadm: {e}");
            return ExitCode::from(1);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&l) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("rvsadm: {e}");
                return ExitCode::from(1);
            }
        }
        return ExitCode::SUCCESS;
    }
    let out = if args.timeout {
        format!("Timeout (tcp tcpfin udp): {} {} {}\n", l.timeouts.0, l.timeouts.1, l.timeouts.2)
    } else if args.stats {
        stats(&l)
    } else if args.rate {
        rate(&l)
    } else if args.connection {
        connections(&l)
    } else if args.neighbors {
        neighbors(&l)
    } else {
        list(&l)
    };
    print!("{out}");
    ExitCode::SUCCESS
}
