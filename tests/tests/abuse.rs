//! Malformed and hostile requests written byte by byte (HTTP/1.1 over TLS,
//! and HTTP/2 frames with hand-encoded HPACK): each gets a clear rejection —
//! a status, an RST_STREAM or a GOAWAY — pveproxy never sees it, and the
//! gateway keeps serving with bounded memory.

use std::sync::atomic::Ordering;
use std::time::Duration;

use pve_migration_tests::{Rig, TOKEN, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NET: &str = "/api2/json/nodes/pve1/network";

/// Writes `bytes` on a new TLS connection (ALPN `alpn`) and reads until the
/// gateway closes it (at most 10 s; then whatever arrived).
async fn exchange(rig: &Rig, alpn: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut tls = rig.client.connect(rig.gw(), &[alpn]).await.expect("TLS");
    // A write may fail when the gateway has already closed: the answer is
    // in what was read.
    let _ = tls.write_all(bytes).await;
    let _ = tls.flush().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    out
}

/// The gateway still answers, and pveproxy received `perl_requests` in all.
async fn still_serving(rig: &Rig, perl_requests: u64) {
    let r = rig
        .client
        .get(rig.gw(), "/api2/json/version", &[("authorization", TOKEN)])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        rig.perl().stats().requests.load(Ordering::SeqCst),
        perl_requests,
        "requests pveproxy received"
    );
}

fn status_line(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    text.split("\r\n").next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http1_requests_are_rejected_before_pveproxy() {
    let rig = Rig::start().await;
    // well past max_header_bytes (64 KiB), which hyper checks per read
    let big = "a".repeat(200 * 1024);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "two different Content-Length",
            format!(
                "POST {NET} HTTP/1.1\r\nHost: pve1\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc"
            ),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "obs-fold",
            format!("GET {NET} HTTP/1.1\r\nHost: pve1\r\nX-Folded: a\r\n b\r\n\r\n"),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "bare CR",
            format!("GET {NET} HTTP/1.1\rHost: pve1\r\n\r\n"),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "NUL in a header value",
            format!("GET {NET} HTTP/1.1\r\nHost: pve1\r\nX-Nul: a\0b\r\n\r\n"),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "space before the colon",
            format!("GET {NET} HTTP/1.1\r\nHost : pve1\r\n\r\n"),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "Transfer-Encoding other than chunked last",
            format!(
                "POST {NET} HTTP/1.1\r\nHost: pve1\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"
            ),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "oversized header",
            format!("GET {NET} HTTP/1.1\r\nHost: pve1\r\nX-Big: {big}\r\n\r\n"),
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            "oversized URI",
            format!("GET {NET}?q={big} HTTP/1.1\r\nHost: pve1\r\n\r\n"),
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
    ];
    let mut failures = Vec::new();
    for (name, request, want) in &cases {
        let answer = exchange(&rig, b"http/1.1", request.as_bytes()).await;
        let got = status_line(&answer);
        if got != *want {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
        // Exactly one answer: nothing after the rejection was parsed as a
        // further request.
        let answers = String::from_utf8_lossy(&answer)
            .matches("HTTP/1.1 ")
            .count();
        if answers != 1 {
            failures.push(format!("{name}: {answers} answers"));
        }
    }
    assert_eq!(failures, Vec::<String>::new());
    still_serving(&rig, 1).await;
}

/// Content-Length together with Transfer-Encoding: the request is read by
/// its Transfer-Encoding alone and the connection is closed after the answer
/// (RFC 9112 §6.1), so bytes smuggled after the chunked body are never read
/// as a request; pveproxy gets one well-formed chunked request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_cannot_smuggle() {
    let rig = Rig::start().await;
    let request = format!(
        "POST /api2/json/version HTTP/1.1\r\nHost: pve1\r\nAuthorization: {TOKEN}\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: pve1\r\n\r\n"
    );
    let answer = exchange(&rig, b"http/1.1", request.as_bytes()).await;
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    let seen = rig.perl().stats().recent();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/api2/json/version");
    assert!(
        !seen[0].headers.contains_key("content-length"),
        "{:?}",
        seen[0]
    );
    assert_eq!(
        seen[0]
            .headers
            .get("transfer-encoding")
            .map(|v| v.as_bytes()),
        Some(&b"chunked"[..])
    );
}

/// A chunk size that overflows, in a body already being streamed to
/// pveproxy: the client's 400, not a 502 blaming pveproxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_chunked_body_is_the_clients_400() {
    let rig = Rig::start().await;
    let request = format!(
        "POST {NET} HTTP/1.1\r\nHost: pve1\r\nAuthorization: {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff1\r\nx\r\n0\r\n\r\n"
    );
    let answer = exchange(&rig, b"http/1.1", request.as_bytes()).await;
    assert_eq!(
        status_line(&answer),
        "HTTP/1.1 400 invalid request body: invalid chunk size: overflow"
    );
    // pveproxy dropped the cut-off request; only the check below counts.
    still_serving(&rig, 1).await;
}

/// A bare LF as line end is accepted (RFC 9112 §2.2 allows it) and the
/// request pveproxy gets is rewritten with CRLF from what the gateway
/// parsed, so both sides see the same request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf_is_read_as_one_request_and_forwarded_well_formed() {
    let rig = Rig::start().await;
    let request = format!(
        "GET /api2/json/version HTTP/1.1\nHost: pve1\nAuthorization: {TOKEN}\nX-Injected: a\nConnection: close\n\n"
    );
    let answer = exchange(&rig, b"http/1.1", request.as_bytes()).await;
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
    let seen = rig.perl().stats().recent();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers.get("x-injected").map(|v| v.as_bytes()),
        Some(&b"a"[..])
    );
}

/// Upgrade requests the gateway must not act on: `h2c` (a way to reach the
/// backend unproxied) loses its hop-by-hop headers, and a WebSocket upgrade
/// the backend declines leaves the connection in HTTP, so bytes sent after
/// it are parsed as the next request, not tunnelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_abuse_is_not_tunnelled() {
    let rig = Rig::start().await;
    let h2c = format!(
        "GET /api2/json/version HTTP/1.1\r\nHost: pve1\r\nAuthorization: {TOKEN}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n\
         GET /api2/json/version HTTP/1.1\r\nHost: pve1\r\nAuthorization: {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let answer = exchange(&rig, b"http/1.1", h2c.as_bytes()).await;
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
    let seen = rig.perl().stats().recent();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        for h in ["upgrade", "http2-settings", "connection"] {
            assert!(!r.headers.contains_key(h), "{h} reached pveproxy: {r:?}");
        }
    }

    // A WebSocket upgrade to a path that is no WebSocket: pveproxy answers
    // normally, and what follows is the next request.
    let ws = format!(
        "GET /api2/json/version HTTP/1.1\r\nHost: pve1\r\nAuthorization: {TOKEN}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\
         GET /api2/json/version HTTP/1.1\r\nHost: pve1\r\nAuthorization: {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let answer = exchange(&rig, b"http/1.1", ws.as_bytes()).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.contains("101 Switching Protocols"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 2, "{text}");
    still_serving(&rig, 5).await;
}

// --- HTTP/2 -----------------------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
fn hpack_int(first: u8, n: u32, mut v: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// A literal header field without indexing, new name, no Huffman coding.
fn literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00];
    hpack_int(0, 7, name.len(), &mut out);
    out.extend_from_slice(name);
    hpack_int(0, 7, value.len(), &mut out);
    out.extend_from_slice(value);
    out
}

fn block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    fields.iter().flat_map(|(n, v)| literal(n, v)).collect()
}

/// A GET's header fields with `extra` after the usual ones.
fn get_fields<'a>(extra: &[(&'a [u8], &'a [u8])]) -> Vec<(&'a [u8], &'a [u8])> {
    let mut f: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"pve1"),
        (b":path", b"/api2/json/version"),
        (b"authorization", TOKEN.as_bytes()),
    ];
    f.extend_from_slice(extra);
    f
}

/// What the gateway did with stream 1.
#[derive(Debug, PartialEq)]
enum H2Outcome {
    /// RST_STREAM with this error code.
    Reset(u32),
    /// GOAWAY with this error code.
    GoAway(u32),
    /// A response HEADERS frame: the request was accepted.
    Answered,
    /// The connection closed without either.
    Closed,
}

/// Sends the preface, SETTINGS and `frames`, then reads the gateway's
/// frames until it resets stream 1, sends a GOAWAY, answers, or closes (at
/// most 10 s).
async fn h2_exchange(rig: &Rig, frames: &[u8]) -> H2Outcome {
    h2_exchange_repeated(rig, frames, &[], 0).await
}

/// [`h2_exchange`] with `tail` written `times` times after `frames` (without
/// building the whole byte string).
async fn h2_exchange_repeated(rig: &Rig, frames: &[u8], tail: &[u8], times: usize) -> H2Outcome {
    let mut tls = rig.client.connect(rig.gw(), &[b"h2"]).await.expect("TLS");
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    tls.write_all(&hello).await.expect("preface");
    let (frames, tail) = (frames.to_vec(), tail.to_vec());
    let (mut rd, mut wr) = tokio::io::split(tls);
    let w = tokio::spawn(async move {
        if wr.write_all(&frames).await.is_ok() {
            for _ in 0..times {
                if wr.write_all(&tail).await.is_err() {
                    break;
                }
            }
        }
        let _ = wr.flush().await;
        wr
    });
    let outcome = tokio::time::timeout(Duration::from_secs(10), async move {
        loop {
            let mut head = [0u8; 9];
            if rd.read_exact(&mut head).await.is_err() {
                return H2Outcome::Closed;
            }
            let len =
                (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            let mut payload = vec![0u8; len];
            if rd.read_exact(&mut payload).await.is_err() {
                return H2Outcome::Closed;
            }
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let code = |at: usize| {
                u32::from_be_bytes([
                    payload[at],
                    payload[at + 1],
                    payload[at + 2],
                    payload[at + 3],
                ])
            };
            match head[3] {
                RST_STREAM if stream == 1 => return H2Outcome::Reset(code(0)),
                GOAWAY => return H2Outcome::GoAway(code(4)),
                HEADERS if stream == 1 => return H2Outcome::Answered,
                _ => {}
            }
        }
    })
    .await
    .unwrap_or(H2Outcome::Closed);
    w.abort();
    outcome
}

const PROTOCOL_ERROR: u32 = 0x1;

fn headers_frame(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    frame(HEADERS, END_HEADERS | END_STREAM, 1, &block(fields))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http2_requests_are_reset_before_pveproxy() {
    let rig = Rig::start().await;
    // The encoder itself is right: a well-formed request is answered.
    assert_eq!(
        h2_exchange(&rig, &headers_frame(&get_fields(&[]))).await,
        H2Outcome::Answered
    );
    let reset = H2Outcome::Reset(PROTOCOL_ERROR);
    let no_path: Vec<(&[u8], &[u8])> = get_fields(&[])
        .into_iter()
        .filter(|(n, _)| *n != b":path")
        .collect();
    let mut pseudo_after_regular = get_fields(&[]);
    pseudo_after_regular.push((b":method", b"GET"));
    let cases: Vec<(&str, Vec<u8>, H2Outcome)> = vec![
        ("missing :path", headers_frame(&no_path), reset),
        (
            "pseudo-header after a regular one",
            headers_frame(&pseudo_after_regular),
            H2Outcome::Reset(PROTOCOL_ERROR),
        ),
        (
            "unknown pseudo-header",
            headers_frame(&get_fields(&[(b":foo", b"bar")])),
            H2Outcome::GoAway(PROTOCOL_ERROR),
        ),
        (
            "uppercase header name",
            headers_frame(&get_fields(&[(b"X-Upper", b"1")])),
            H2Outcome::GoAway(PROTOCOL_ERROR),
        ),
        (
            "connection header",
            headers_frame(&get_fields(&[(b"connection", b"keep-alive")])),
            H2Outcome::Reset(PROTOCOL_ERROR),
        ),
        (
            "transfer-encoding header",
            headers_frame(&get_fields(&[(b"transfer-encoding", b"chunked")])),
            H2Outcome::Reset(PROTOCOL_ERROR),
        ),
        (
            "te other than trailers",
            headers_frame(&get_fields(&[(b"te", b"gzip")])),
            H2Outcome::Reset(PROTOCOL_ERROR),
        ),
        (
            "CR LF in a value (header injection on the way to HTTP/1.1)",
            headers_frame(&get_fields(&[(b"x-inject", b"a\r\nx-pve-dry-run: 1")])),
            H2Outcome::GoAway(PROTOCOL_ERROR),
        ),
        (
            "NUL in a value",
            headers_frame(&get_fields(&[(b"x-nul", b"a\0b")])),
            H2Outcome::GoAway(PROTOCOL_ERROR),
        ),
        (
            "HPACK index beyond the tables",
            frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &[0x80 | 0x7f, 0xff, 0x07],
            ),
            H2Outcome::GoAway(PROTOCOL_ERROR),
        ),
        (
            "HPACK table size update above the limit",
            {
                let mut b = Vec::new();
                hpack_int(0x20, 5, 1 << 20, &mut b);
                b.extend(block(&get_fields(&[])));
                frame(HEADERS, END_HEADERS | END_STREAM, 1, &b)
            },
            H2Outcome::GoAway(PROTOCOL_ERROR),
        ),
        (
            "DATA on a stream that was never opened",
            frame(DATA, END_STREAM, 1, b"x"),
            H2Outcome::GoAway(PROTOCOL_ERROR),
        ),
    ];
    let mut failures = Vec::new();
    for (name, frames, want) in cases {
        let got = h2_exchange(&rig, &frames).await;
        if got != want {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert_eq!(failures, Vec::<String>::new());
    // Only the well-formed request and this check reached pveproxy.
    still_serving(&rig, 2).await;
}

/// The resident set of this process (gateway and test) in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A header block that never ends (CVE-2024-27316 style): HEADERS without
/// END_HEADERS, then 48 MiB of CONTINUATION frames. The gateway stops it at
/// its header-list limit with a GOAWAY instead of buffering it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_off_with_bounded_memory() {
    let rig = Rig::start().await;
    let before = rss_kib();
    let head = frame(HEADERS, END_STREAM, 1, &block(&get_fields(&[])));
    let continuation = frame(CONTINUATION, 0, 1, &literal(b"x-filler", &[b'a'; 16_000]));
    let outcome = within(
        "flood answered",
        h2_exchange_repeated(&rig, &head, &continuation, 3_000),
    )
    .await;
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    eprintln!("CONTINUATION flood: {outcome:?}, memory grew by {grown_mib} MiB");
    // ENHANCE_YOUR_CALM: the header list grew past its limit
    assert_eq!(outcome, H2Outcome::GoAway(0xb));
    // 48 MiB were offered.
    assert!(grown_mib < 16, "memory grew by {grown_mib} MiB");
    still_serving(&rig, 1).await;
}
