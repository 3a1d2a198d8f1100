//! W3C trace context: the trace id that ties a request's log line, evidence
//! record and spans together, propagated to both backends as `traceparent`.

use http::HeaderValue;

/// A request's trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The caller's span id (16 hex digits), if it sent a `traceparent`.
    pub parent_span: Option<String>,
}

thread_local! {
    /// SplitMix64 state, seeded once per thread from the system RNG: trace
    /// ids must be unique and unpredictable enough, not secret, and a system
    /// RNG call per request shows up in profiles.
    static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
        let mut seed = [0u8; 8];
        if aws_lc_rs::rand::fill(&mut seed).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            seed = t.to_le_bytes();
        }
        u64::from_le_bytes(seed) | 1
    });
}

fn next_u64() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// Appends `bytes` as lowercase hex.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2 + 16);
    while out.len() < bytes * 2 {
        push_hex(&mut out, &next_u64().to_le_bytes());
    }
    out.truncate(bytes * 2);
    out
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

impl TraceContext {
    /// Continues the caller's trace (`traceparent: 00-<trace>-<span>-<flags>`) or starts one.
    pub fn from_header(traceparent: Option<&HeaderValue>) -> Self {
        let parsed = traceparent.and_then(|v| v.to_str().ok()).and_then(|v| {
            let mut parts = v.trim().split('-');
            let (version, trace, span, _flags) =
                (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            (version == "00" && is_hex(trace, 32) && is_hex(span, 16))
                .then(|| (trace.to_owned(), span.to_owned()))
        });
        match parsed {
            Some((trace_id, span)) => Self {
                trace_id,
                parent_span: Some(span),
            },
            None => Self {
                trace_id: random_hex(16),
                parent_span: None,
            },
        }
    }

    /// A `traceparent` for a backend call: this trace, a new span id, sampled.
    pub fn child_header(&self) -> HeaderValue {
        let mut v = String::with_capacity(55);
        v.push_str("00-");
        v.push_str(&self.trace_id);
        v.push('-');
        v.push_str(&random_hex(8));
        v.push_str("-01");
        HeaderValue::from_str(&v).expect("hex is a valid header value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_or_starts_a_trace() {
        let h = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let t = TraceContext::from_header(Some(&h));
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = t.child_header();
        assert!(
            child
                .to_str()
                .unwrap()
                .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        );
        let fresh = TraceContext::from_header(Some(&HeaderValue::from_static("garbage")));
        assert_eq!(fresh.trace_id.len(), 32);
        assert_ne!(fresh.trace_id, TraceContext::from_header(None).trace_id);
    }
}
