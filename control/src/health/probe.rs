//! One health probe against one real server, with ordinary kernel sockets:
//! they leave through the exception path (the kernel's TAP interface), so
//! they reach real servers exactly as the load-balanced traffic does.

use super::{CheckKind, HealthCheck};
use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

/// The most of an HTTP response read (status line, headers and the body
/// searched for `expect_body`).
const MAX_RESPONSE: usize = 64 * 1024;

/// Runs `check` against `addr`; `Err` says why it failed.
pub fn probe(check: &HealthCheck, addr: SocketAddrV4) -> Result<(), String> {
    let deadline = Instant::now() + check.timeout;
    let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(addr), check.timeout).map_err(|e| format!("connect: {e}"))?;
    match &check.kind {
        CheckKind::Tcp => Ok(()),
        CheckKind::Http { path, host, expect_status, expect_body } => {
            let host = host.clone().unwrap_or_else(|| addr.to_string());
            let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: rvs-health-check\r\nConnection: close\r\n\r\n");
            stream.set_write_timeout(Some(remaining(deadline)?)).map_err(|e| format!("socket: {e}"))?;
            stream.write_all(request.as_bytes()).map_err(|e| format!("sending the request: {e}"))?;
            let response = read_response(&mut stream, deadline)?;
            check_response(&response, expect_status, expect_body.as_deref())
        }
    }
}

fn remaining(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err("timed out".into())
    } else {
        Ok(left)
    }
}

/// Where the body starts and how long it is, once the head is complete
/// and names a Content-Length.
fn body_extent(response: &[u8]) -> Option<(usize, usize)> {
    let head_end = find(response, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&response[..head_end]);
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok()).flatten()
    })?;
    Some((head_end, len))
}

/// Reads until the server closes, the body its Content-Length announces
/// is complete (a server may keep the connection open regardless of
/// `Connection: close`), `MAX_RESPONSE` bytes, or the deadline.
fn read_response(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, String> {
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while response.len() < MAX_RESPONSE {
        if body_extent(&response).is_some_and(|(start, len)| response.len() >= start + len) {
            break;
        }
        stream.set_read_timeout(Some(remaining(deadline)?)).map_err(|e| format!("socket: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n.min(MAX_RESPONSE - response.len())]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err("timed out reading the response".into());
            }
            Err(e) => return Err(format!("reading the response: {e}")),
        }
    }
    Ok(response)
}

/// Checks an HTTP response's status code and, if asked, its body.
pub fn check_response(response: &[u8], expect_status: &[u16], expect_body: Option<&str>) -> Result<(), String> {
    let line_end = response.iter().position(|&b| b == b'\n').ok_or("no HTTP status line")?;
    let line = String::from_utf8_lossy(&response[..line_end]);
    let mut parts = line.split_whitespace();
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(format!("bad status line {:?}", line.trim()));
    };
    if !version.starts_with("HTTP/") {
        return Err(format!("bad status line {:?}", line.trim()));
    }
    let code: u16 = code.parse().map_err(|_| format!("bad status code {code:?}"))?;
    if !expect_status.contains(&code) {
        return Err(format!("status {code}, expected {expect_status:?}"));
    }
    if let Some(want) = expect_body {
        let body_start = find(response, b"\r\n\r\n").map(|i| i + 4).or_else(|| find(response, b"\n\n").map(|i| i + 2)).unwrap_or(response.len());
        if find(&response[body_start..], want.as_bytes()).is_none() {
            return Err(format!("body does not contain {want:?}"));
        }
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    fn http(path: &str, status: &[u16], body: Option<&str>) -> HealthCheck {
        HealthCheck {
            kind: CheckKind::Http { path: path.into(), host: None, expect_status: status.to_vec(), expect_body: body.map(Into::into) },
            port: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            rise: 1,
            fall: 1,
        }
    }

    /// A one-shot HTTP server on loopback answering `response`; returns its
    /// address and the request it received.
    fn serve_once(response: &'static str) -> (SocketAddrV4, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let SocketAddr::V4(addr) = l.local_addr().unwrap() else { unreachable!() };
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while find(&req, b"\r\n\r\n").is_none() {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&req).into_owned()
        });
        (addr, t)
    }

    #[test]
    fn response_checks() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nhealthy";
        assert_eq!(check_response(ok, &[200], None), Ok(()));
        assert_eq!(check_response(ok, &[200], Some("health")), Ok(()));
        assert!(check_response(ok, &[200], Some("Content-Length")).unwrap_err().contains("body does not contain"), "headers are not the body");
        assert!(check_response(ok, &[204, 301], None).unwrap_err().contains("status 200"));
        assert!(check_response(b"", &[200], None).is_err());
        assert!(check_response(b"SSH-2.0-OpenSSH\r\n", &[200], None).unwrap_err().contains("bad status line"));
        assert!(check_response(b"HTTP/1.1 abc\r\n", &[200], None).unwrap_err().contains("bad status code"));
        assert!(check_response(b"HTTP/1.1\r\n", &[200], None).is_err());
    }

    #[test]
    fn http_probe_against_a_real_socket() {
        let (addr, server) = serve_once("HTTP/1.0 200 OK\r\n\r\nstatus: ok\n");
        assert_eq!(probe(&http("/healthz", &[200], Some("ok")), addr), Ok(()));
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /healthz HTTP/1.0\r\n"), "{request}");
        assert!(request.contains(&format!("Host: {addr}\r\n")), "{request}");

        let (addr, server) = serve_once("HTTP/1.0 503 Service Unavailable\r\n\r\n");
        assert!(probe(&http("/", &[200], None), addr).unwrap_err().contains("status 503"));
        server.join().unwrap();
    }

    #[test]
    fn a_server_that_keeps_the_connection_open_is_not_waited_for() {
        // Answers with a Content-Length, then keeps the socket open.
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let SocketAddr::V4(addr) = l.local_addr().unwrap() else { unreachable!() };
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok").unwrap();
            std::thread::sleep(Duration::from_millis(800));
        });
        let t = Instant::now();
        assert_eq!(probe(&http("/", &[200], Some("ok")), addr), Ok(()));
        assert!(t.elapsed() < Duration::from_millis(400), "did not wait for the close: {:?}", t.elapsed());
        server.join().unwrap();
    }

    #[test]
    fn refused_and_silent_servers_fail() {
        // A port nobody listens on: bind, learn the port, close.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let tcp = HealthCheck { kind: CheckKind::Tcp, ..http("/", &[200], None) };
        assert!(probe(&tcp, addr).unwrap_err().starts_with("connect:"));

        // Accepts but never answers: the timeout decides.
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let SocketAddr::V4(addr) = l.local_addr().unwrap() else { unreachable!() };
        assert_eq!(probe(&tcp, addr), Ok(()), "TCP only needs the handshake");
        let t = Instant::now();
        let e = probe(&http("/", &[200], None), addr).unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(2), "bounded by the check's timeout");
        drop(l);
    }
}
