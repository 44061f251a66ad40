//! `tracenat demo`: the story in one command. Builds the lab (by default with a Kea DHCP
//! server handing out the subscribers' addresses), runs the NAT in its namespace, sends
//! real traffic from the kernel's own stacks (HTTP from every subscriber to a server that
//! writes an access log, a UDP exchange, ping), hands one subscriber's address to another
//! customer mid-demo and sends more requests from it, stops the NAT, then traces every
//! request in the server's access log back to its subscriber with the mapping log, and to
//! the customer who held that address then with the identity records the NAT learned
//! from Kea's lease file. The pieces are public so the lab's integration tests drive the
//! same traffic.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::lab::{self, Addressing, UpOptions, topology};
use crate::reader::attribute::Summary;

mod story;
mod trace;

pub use trace::{Handover, Sent, Traced};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("lab: {0}")]
    Lab(#[from] lab::LabError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0}")]
    Failed(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Io { what, source }
}

/// Runs `f` on a thread that has entered network namespace `ns` (so sockets it opens
/// belong to that namespace's stack).
pub fn in_namespace<T: Send>(ns: &str, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let handle = File::open(&path)?;
                // SAFETY: setns on a namespace file descriptor we hold; it affects only
                // this thread, which ends with the scope.
                if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

/// One HTTP/1.1 GET; the status code and the local (subscriber) port used.
pub fn http_get(server: SocketAddr, path: &str) -> io::Result<(u16, u16)> {
    let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let local_port = stream.local_addr()?.port();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nUser-Agent: tracenat-demo\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP response: {response:.40}")))?;
    Ok((status, local_port))
}

/// Sends a datagram and waits for its echo.
pub fn udp_round_trip(server: SocketAddr, payload: &[u8]) -> io::Result<Vec<u8>> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    socket.send_to(payload, server)?;
    let mut buf = vec![0u8; 2048];
    let (n, _) = socket.recv_from(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// `ping -c count` from a namespace; true if every echo came back.
pub fn ping(ns: &str, target: Ipv4Addr, count: u32) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-q", "-c"])
        .arg(count.to_string())
        .args(["-i", "0.2", "-W", "2"])
        .arg(target.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A `tracenat` subcommand running in a lab namespace, stopped with SIGTERM on drop.
pub struct LabProcess {
    child: Option<Child>,
    pub output: PathBuf,
}

impl LabProcess {
    pub fn start(
        exe: &Path,
        ns: &str,
        args: &[&str],
        output: PathBuf,
    ) -> Result<LabProcess, DemoError> {
        let log = File::create(&output).map_err(io_err(output.display().to_string()))?;
        let err = log.try_clone().map_err(io_err("output file"))?;
        // `ip netns exec` execs the program: the child's pid is tracenat's.
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io_err(format!(
                "starting tracenat {} in {ns}",
                args.join(" ")
            )))?;
        Ok(LabProcess {
            child: Some(child),
            output,
        })
    }

    /// SIGTERM, then waits; returns what it printed.
    pub fn stop(mut self) -> Result<String, DemoError> {
        self.terminate()?;
        std::fs::read_to_string(&self.output).map_err(io_err("process output"))
    }

    fn terminate(&mut self) -> Result<(), DemoError> {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().map_err(io_err("waiting"))?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    return Err(DemoError::Failed(
                        "a lab process did not stop on SIGTERM".into(),
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// SIGKILL (a crash: nothing flushed, nothing closed), then waits; returns what it
    /// printed.
    pub fn kill(mut self) -> Result<String, DemoError> {
        if let Some(mut child) = self.child.take() {
            child.kill().map_err(io_err("killing"))?;
            child.wait().map_err(io_err("waiting"))?;
        }
        std::fs::read_to_string(&self.output).map_err(io_err("process output"))
    }

    /// The process id (tracenat's own: `ip netns exec` execs it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

/// Starts the NAT in `tn-nat` and waits until its metrics answer (it is forwarding).
pub fn start_nat(exe: &Path, dir: &Path) -> Result<LabProcess, DemoError> {
    start_nat_under(&[], exe, dir)
}

/// [`start_nat`] through a wrapper that execs it, e.g. `env VAR=value` (tests run the NAT
/// under libfaketime this way).
pub fn start_nat_under(wrapper: &[&str], exe: &Path, dir: &Path) -> Result<LabProcess, DemoError> {
    let config = dir.join("tracenat.toml");
    let config = config.to_str().unwrap_or_default().to_owned();
    let exe_text = exe.to_str().unwrap_or_default();
    let (program, args): (&Path, Vec<&str>) = match wrapper.split_first() {
        None => (exe, vec!["run", "--config", &config]),
        Some((first, rest)) => {
            let mut args = rest.to_vec();
            args.extend([exe_text, "run", "--config", &config]);
            (Path::new(*first), args)
        }
    };
    let mut nat = LabProcess::start(program, topology::NAT_NS, &args, dir.join("run.log"))?;
    let metrics: SocketAddr = topology::METRICS.parse().expect("lab metrics address");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if in_namespace(topology::NAT_NS, || {
            crate::dataplane::metrics::fetch(metrics)
        })
        .is_ok()
        {
            return Ok(nat);
        }
        if !nat.is_running() || Instant::now() > deadline {
            let output = std::fs::read_to_string(&nat.output).unwrap_or_default();
            return Err(DemoError::Failed(format!(
                "tracenat run did not come up:\n{output}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The lab's web server and UDP echo server.
pub fn http_server() -> SocketAddr {
    SocketAddrV4::new(topology::HTTP_SERVER.parse().expect("lab address"), 80).into()
}

pub fn echo_server() -> SocketAddr {
    SocketAddrV4::new(topology::UDP_ECHO_SERVER.parse().expect("lab address"), 7).into()
}

/// Starts both servers in `tn-inet`; the web server logs to `<dir>/access.log`.
pub fn start_servers(exe: &Path, dir: &Path) -> Result<[LabProcess; 2], DemoError> {
    let access_log = dir.join("access.log");
    let _ = std::fs::remove_file(&access_log);
    let log_path = access_log.to_str().unwrap_or_default().to_owned();
    let listen = http_server().to_string();
    let web = LabProcess::start(
        exe,
        topology::INET_NS,
        &[
            "lab",
            "serve-http",
            "--listen",
            &listen,
            "--access-log",
            &log_path,
        ],
        dir.join("http.out"),
    )?;
    let listen = echo_server().to_string();
    let echo = LabProcess::start(
        exe,
        topology::INET_NS,
        &["lab", "udp-echo", "--listen", &listen],
        dir.join("echo.out"),
    )?;
    Ok([web, echo])
}

pub struct DemoOptions {
    pub workers: u16,
    pub subscribers: u16,
    pub requests_per_subscriber: u16,
    pub dir: PathBuf,
    /// Static addresses (the old story, without customers) or DHCP leases from Kea.
    pub addressing: Addressing,
    /// Take down a lab that is already up (the command does; tests must not take down
    /// someone else's).
    pub force: bool,
    /// Leave the lab up at the end.
    pub keep: bool,
}

/// What the demo showed.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    pub requests: usize,
    pub attributed: Summary,
    /// Requests whose unique answer named the subscriber address and port that sent them.
    pub traced_right: usize,
    /// … and, in the DHCP lab, the customer who held that address then.
    pub traced_to_customer: usize,
    /// Every request, as sent and as traced.
    pub traced: Vec<Traced>,
    /// The address that changed hands mid-demo (DHCP lab with two subscribers or more).
    pub handover: Option<Handover>,
    pub udp_echoed: bool,
    pub pinged: bool,
}

impl DemoReport {
    /// Whether the story held: every request traced to its sender (and, with DHCP, to
    /// its customer, the handover included), the UDP echo and the ping answered.
    pub fn succeeded(&self, addressing: Addressing) -> bool {
        let traced = match addressing {
            Addressing::Static => self.traced_right,
            Addressing::Dhcp => self.traced_to_customer,
        };
        let handover_ok = addressing == Addressing::Static || self.handover.is_some();
        self.requests > 0
            && traced == self.requests
            && self.traced.len() == self.requests
            && handover_ok
            && self.udp_echoed
            && self.pinged
    }
}

pub fn run(
    exe: &Path,
    options: &DemoOptions,
    out: &mut dyn Write,
) -> Result<DemoReport, DemoError> {
    let dhcp = options.addressing == Addressing::Dhcp;
    let _ = writeln!(
        out,
        "== 1. The lab: {} subscribers{} -> access router -> NAT ({} worker{}) -> internet",
        options.subscribers,
        if dhcp {
            " (addresses from a Kea DHCP server)"
        } else {
            ""
        },
        options.workers,
        if options.workers == 1 { "" } else { "s" }
    );
    let up = UpOptions {
        workers: options.workers,
        subscribers: options.subscribers,
        dir: options.dir.clone(),
        force: options.force,
    };
    lab::up_with(&up, options.addressing, &mut |_| {})?;
    let result = story::scenario(exe, options, out);
    if !options.keep {
        lab::down(&options.dir, &mut |_| {})?;
        let _ = writeln!(out, "== lab removed");
    }
    result
}
