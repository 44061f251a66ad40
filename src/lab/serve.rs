//! The lab's servers (run inside `tn-inet` by the demo): a tiny HTTP/1.1 server that
//! writes an Apache *combined* access log with the client's port, and a UDP echo server.
//!
//! The access log is what `tracenat log attribute` reads back: one line per request,
//! client as `IP:PORT` (nginx's `$remote_addr:$remote_port`), time in UTC:
//!
//! ```text
//! 203.0.113.7:40213 - - [25/Nov/2026:10:11:12 +0000] "GET / HTTP/1.1" 200 45 "-" "curl/8.14.1"
//! ```
//!
//! Each line is written with one `write` to a file opened for appending, before the
//! response is sent: once a client has its answer, its line is in the file. Both servers
//! exit with status 0 on SIGTERM or SIGINT.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::LabError;

/// Largest request head read (request line and headers).
const MAX_HEAD: usize = 16 * 1024;

extern "C" fn exit_on_signal(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe. Nothing is buffered: log lines are written whole.
    unsafe { libc::_exit(0) }
}

/// SIGTERM and SIGINT end the process at once with status 0.
fn exit_on_termination() {
    let handler = exit_on_signal as extern "C" fn(libc::c_int);
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only calls _exit; installing it has no other effect.
        unsafe {
            libc::signal(signal, handler as libc::sighandler_t);
        }
    }
}

/// Serves HTTP on `listen` until a signal, logging every request to `access_log`.
pub fn serve_http(listen: SocketAddr, access_log: &Path) -> Result<(), LabError> {
    exit_on_termination();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(access_log)
        .map_err(|e| LabError::io(access_log, e))?;
    let log = Arc::new(Mutex::new(log));
    let listener = TcpListener::bind(listen).map_err(|e| bind_error(listen, e))?;
    eprintln!(
        "serve-http: listening on {listen}, access log {}",
        access_log.display()
    );
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    if let Err(error) = handle_connection(stream, &log) {
                        eprintln!("serve-http: {error}");
                    }
                });
            }
            Err(error) => eprintln!("serve-http: accept: {error}"),
        }
    }
    Ok(())
}

fn bind_error(listen: SocketAddr, source: io::Error) -> LabError {
    LabError::Bind {
        addr: listen,
        source,
    }
}

/// A parsed request head.
#[derive(Debug, Default, PartialEq, Eq)]
struct Request {
    line: String,
    method: String,
    referer: Option<String>,
    user_agent: Option<String>,
}

fn handle_connection(stream: TcpStream, log: &Mutex<File>) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let peer = stream.peer_addr()?;
    let local = stream.local_addr()?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    // One request per connection: every response says `Connection: close`.
    let Some(request) = read_head(&mut reader)? else {
        return Ok(());
    };
    let time = SystemTime::now();
    let (status, reason, body) = match request.method.as_str() {
        "GET" | "HEAD" => (
            200,
            "OK",
            format!("hello from tracenat lab server {local}\nyou are {peer}\n"),
        ),
        "" => (400, "Bad Request", "bad request\n".to_owned()),
        _ => (405, "Method Not Allowed", "only GET and HEAD\n".to_owned()),
    };
    let send_body = request.method != "HEAD";
    let size = if send_body {
        body.len().to_string()
    } else {
        "-".to_owned()
    };
    let line = format!(
        "{peer} - - [{}] \"{}\" {status} {size} \"{}\" \"{}\"\n",
        clf_time(time),
        escape(&request.line),
        escape(request.referer.as_deref().unwrap_or("-")),
        escape(request.user_agent.as_deref().unwrap_or("-")),
    );
    {
        let mut file = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(line.as_bytes())?;
        file.flush()?;
    }
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\nServer: tracenat-lab\r\n\r\n",
        body.len()
    );
    if send_body {
        response.push_str(&body);
    }
    writer.write_all(response.as_bytes())?;
    writer.flush()?;
    let _ = writer.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Reads the request line and headers; `None` when the client closed without a request.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut request = Request::default();
    let mut total = 0;
    let mut first = true;
    loop {
        let mut raw = Vec::new();
        let n = reader
            .by_ref()
            .take((MAX_HEAD - total) as u64 + 1)
            .read_until(b'\n', &mut raw)?;
        if n == 0 {
            return Ok(if first { None } else { Some(request) });
        }
        total += n;
        let text = String::from_utf8_lossy(&raw);
        let text = text.trim_end_matches(['\r', '\n']);
        if first {
            first = false;
            request.line = text.to_owned();
            let words: Vec<&str> = text.split(' ').collect();
            if words.len() == 3 && words[2].starts_with("HTTP/") {
                request.method = words[0].to_owned();
            }
        } else if text.is_empty() {
            return Ok(Some(request));
        } else if let Some((name, value)) = text.split_once(':') {
            let value = Some(value.trim().to_owned());
            match name.trim().to_ascii_lowercase().as_str() {
                "referer" => request.referer = value,
                "user-agent" => request.user_agent = value,
                _ => {}
            }
        }
        if total > MAX_HEAD {
            request.method.clear();
            return Ok(Some(request));
        }
    }
}

/// Escapes `"`, `\` and non-printable bytes as nginx does (`\x22`), so one request is
/// one line with balanced quotes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'"' | b'\\' => out.push_str(&format!("\\x{byte:02X}")),
            0x20..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("\\x{byte:02X}")),
        }
    }
    out
}

/// The common-log-format time in UTC: `25/Nov/2026:10:11:12 +0000`.
pub fn clf_time(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{day:02}/{}/{year:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Days since 1970-01-01 to (year, month 1–12, day 1–31), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Echoes every datagram received on `listen` back to its sender until a signal.
pub fn udp_echo(listen: SocketAddr) -> Result<(), LabError> {
    exit_on_termination();
    let socket = UdpSocket::bind(listen).map_err(|e| bind_error(listen, e))?;
    eprintln!("udp-echo: listening on {listen}");
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Err(error) = socket.send_to(&buf[..n], from) {
                    eprintln!("udp-echo: send to {from}: {error}");
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => eprintln!("udp-echo: receive: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::access_log::{AccessLogParser, JsonFields, LogFormat};

    #[test]
    fn clf_time_is_utc_and_parses_back() {
        // 2026-11-25T10:11:12Z
        let t = UNIX_EPOCH + Duration::from_secs(1_795_601_472);
        assert_eq!(clf_time(t), "25/Nov/2026:10:11:12 +0000");
        assert_eq!(clf_time(UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(clf_time(leap), "29/Feb/2000:00:00:00 +0000");
    }

    #[test]
    fn requests_are_read_and_escaped() {
        let head =
            b"GET /a\"b HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8\r\nReferer: http://r/\r\n\r\n";
        let request = read_head(&mut &head[..]).unwrap().unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(request.referer.as_deref(), Some("http://r/"));
        assert_eq!(escape(&request.line), "GET /a\\x22b HTTP/1.1");
        assert!(read_head(&mut &b""[..]).unwrap().is_none());
        let junk = read_head(&mut &b"hello\n\n"[..]).unwrap().unwrap();
        assert_eq!(junk.method, "");
    }

    #[test]
    fn log_lines_are_what_the_reader_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap(),
        ));
        let server_log = Arc::clone(&log);
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            handle_connection(stream, &server_log).unwrap();
        });
        let mut client = TcpStream::connect(addr).unwrap();
        let client_addr = client.local_addr().unwrap();
        client
            .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nUser-Agent: test/1\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        client.read_to_string(&mut response).unwrap();
        server.join().unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response.contains(&format!("you are {client_addr}")),
            "{response}"
        );

        let text = std::fs::read_to_string(&path).unwrap();
        let line = text.lines().next().unwrap();
        assert!(line.starts_with(&format!("{client_addr} - - [")), "{line}");
        assert!(line.contains("] \"GET /x HTTP/1.1\" 200 "), "{line}");
        assert!(line.ends_with(" \"-\" \"test/1\""), "{line}");
        let mut parser = AccessLogParser::new(LogFormat::Auto, JsonFields::default());
        let record = parser.parse(1, line).unwrap();
        assert_eq!(parser.format(), LogFormat::Combined);
        assert_eq!(record.client_port, Some(client_addr.port()));
        assert_eq!(record.request, "GET /x HTTP/1.1");
    }
}
