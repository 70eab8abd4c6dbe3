//! PROXY protocol v1 (text) and v2 (binary) headers, as sent by HAProxy
//! (`send-proxy`, `send-proxy-v2`), an AWS NLB with proxy protocol v2
//! enabled, or a Kubernetes/Tailscale load balancer.
//!
//! [`parse`] is a pure, bounded parser (fuzzed: `fuzz/fuzz_targets/
//! proxy_protocol.rs`). [`read_header`] uses it on a fresh socket: it only
//! *peeks* until the header is complete, then consumes exactly the
//! header's bytes, so no byte before or of the header reaches TLS or the
//! Kafka decoder, and no byte after it is lost.
//!
//! Hand-written rather than a crate: the two crates on crates.io either
//! allocate from the wire before checking bounds or need a buffered stream
//! wrapper around the socket; this parser is ~150 lines and peeks in place.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;

/// v1 headers are at most 107 bytes, CRLF included (the spec's bound).
pub const V1_MAX: usize = 107;
/// The v2 signature, version/command, family and length bytes.
pub const V2_FIXED: usize = 16;
/// Largest v2 address + TLV block accepted. NLB and HAProxy send well
/// under 300 bytes; the spec allows 65535, which nobody needs here.
pub const V2_MAX_PAYLOAD: usize = 1024;
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_SIG: &[u8; 6] = b"PROXY ";

pub use crate::config::ProxyMode as Mode;

/// A complete header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Bytes the header occupies on the wire.
    pub len: usize,
    pub version: u8,
    /// The original client; `None` for v2 LOCAL (health checks), v1
    /// UNKNOWN and non-IP families: the socket's peer stands.
    pub source: Option<SocketAddr>,
    /// AWS PrivateLink: the VPC endpoint id TLV (type 0xEA, subtype 1).
    pub aws_vpce_id: Option<String>,
}

/// What the bytes so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The stream does not start with a PROXY header.
    Absent,
    /// A header may be starting; more bytes are needed.
    Incomplete,
    Done(Header),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed PROXY protocol header: {0}")]
pub struct Malformed(pub String);

fn bad<T>(why: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed(why.into()))
}

/// Parses the start of a stream. Never reads past `buf`, never allocates
/// more than the TLV it keeps (bounded by [`V2_MAX_PAYLOAD`]).
pub fn parse(buf: &[u8]) -> Result<Parsed, Malformed> {
    let n = buf.len();
    if n == 0 {
        return Ok(Parsed::Incomplete);
    }
    if V2_SIG.starts_with(&buf[..n.min(12)]) {
        return if n < 12 {
            Ok(Parsed::Incomplete)
        } else {
            parse_v2(buf)
        };
    }
    if V1_SIG.starts_with(&buf[..n.min(6)]) {
        return if n < 6 {
            Ok(Parsed::Incomplete)
        } else {
            parse_v1(buf)
        };
    }
    Ok(Parsed::Absent)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, Malformed> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            bad(format!("v1 header has no CRLF within {V1_MAX} bytes"))
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let line =
        std::str::from_utf8(&window[6..end]).map_err(|_| Malformed("v1 header is not ASCII".into()))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let source = match parts.as_slice() {
        ["UNKNOWN", ..] => None,
        [proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip: IpAddr = src
                .parse()
                .map_err(|_| Malformed(format!("v1 source address {src:?}")))?;
            let dip: IpAddr = dst
                .parse()
                .map_err(|_| Malformed(format!("v1 destination address {dst:?}")))?;
            let want_v4 = *proto == "TCP4";
            if ip.is_ipv4() != want_v4 || dip.is_ipv4() != want_v4 {
                return bad(format!("v1 {proto} header with an address of the other family"));
            }
            let port = v1_port(sport)?;
            v1_port(dport)?;
            Some(SocketAddr::new(ip, port))
        }
        _ => {
            return bad(format!(
                "v1 header {:?}: expected TCP4/TCP6 SRC DST SPORT DPORT or UNKNOWN",
                line
            ))
        }
    };
    Ok(Parsed::Done(Header {
        len: end + 2,
        version: 1,
        source,
        aws_vpce_id: None,
    }))
}

fn v1_port(s: &str) -> Result<u16, Malformed> {
    // The spec forbids leading zeros and signs; u16's parser accepts '+'.
    if s.is_empty()
        || s.len() > 5
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return bad(format!("v1 port {s:?}"));
    }
    s.parse().map_err(|_| Malformed(format!("v1 port {s:?}")))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, Malformed> {
    if buf.len() < V2_FIXED {
        return Ok(Parsed::Incomplete);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return bad(format!("v2 version nibble {} (expected 2)", ver_cmd >> 4));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        c => return bad(format!("v2 command {c} (expected LOCAL or PROXY)")),
    };
    let fam = buf[13];
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if len > V2_MAX_PAYLOAD {
        return bad(format!(
            "v2 header claims {len} bytes of addresses and TLVs; at most {V2_MAX_PAYLOAD} accepted"
        ));
    }
    if buf.len() < V2_FIXED + len {
        return Ok(Parsed::Incomplete);
    }
    let body = &buf[V2_FIXED..V2_FIXED + len];
    let (addr_len, source) = match fam {
        0x00 => (0, None),
        0x11 | 0x12 => {
            let a = body
                .get(..12)
                .ok_or_else(|| Malformed("v2 IPv4 block shorter than 12 bytes".into()))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            (
                12,
                Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]]))),
            )
        }
        0x21 | 0x22 => {
            let a = body
                .get(..36)
                .ok_or_else(|| Malformed("v2 IPv6 block shorter than 36 bytes".into()))?;
            let mut o = [0u8; 16];
            o.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(o);
            (
                36,
                Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[32], a[33]]))),
            )
        }
        0x31 | 0x32 => {
            if body.len() < 216 {
                return bad("v2 UNIX block shorter than 216 bytes");
            }
            (216, None)
        }
        f => return bad(format!("v2 address family/protocol byte 0x{f:02x}")),
    };
    let aws_vpce_id = tlvs(&body[addr_len..])?;
    Ok(Parsed::Done(Header {
        len: V2_FIXED + len,
        version: 2,
        source: if local { None } else { source },
        aws_vpce_id,
    }))
}

/// Walks the TLVs within bounds; keeps only AWS's VPC endpoint id.
fn tlvs(mut rest: &[u8]) -> Result<Option<String>, Malformed> {
    let mut vpce = None;
    while !rest.is_empty() {
        if rest.len() < 3 {
            return bad("v2 TLV cut short (fewer than 3 bytes)");
        }
        let (t, l) = (rest[0], u16::from_be_bytes([rest[1], rest[2]]) as usize);
        let v = rest
            .get(3..3 + l)
            .ok_or_else(|| Malformed(format!("v2 TLV type 0x{t:02x} claims {l} bytes past the header")))?;
        if t == 0xEA && v.first() == Some(&0x01) {
            vpce = Some(String::from_utf8_lossy(&v[1..]).chars().take(64).collect());
        }
        rest = &rest[3 + l..];
    }
    Ok(vpce)
}

/// Why a connection was closed before anything else happened.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error(transparent)]
    Malformed(#[from] Malformed),
    #[error("no PROXY protocol header and proxy_protocol = \"required\" (a client connecting directly, not through the load balancer?)")]
    Missing,
    #[error("no complete PROXY protocol header within {0:?}")]
    Timeout(Duration),
    #[error("connection closed before a PROXY protocol header was complete")]
    Closed,
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the header (if `mode` asks for one) and returns the original
/// client address. With `Optional`, a stream that does not start like a
/// header is left untouched.
pub async fn read_header(
    sock: &mut TcpStream,
    mode: Mode,
    timeout: Duration,
) -> Result<Option<Header>, HeaderError> {
    if mode == Mode::Off {
        return Ok(None);
    }
    match tokio::time::timeout(timeout, peek_header(sock)).await {
        Err(_) => Err(HeaderError::Timeout(timeout)),
        Ok(Ok(Some(h))) => {
            use tokio::io::AsyncReadExt;
            let mut sink = [0u8; V2_FIXED + V2_MAX_PAYLOAD];
            sock.read_exact(&mut sink[..h.len]).await?;
            Ok(Some(h))
        }
        Ok(Ok(None)) if mode == Mode::Required => Err(HeaderError::Missing),
        Ok(r) => r,
    }
}

/// Peeks until [`parse`] decides; `Ok(None)` when there is no header.
async fn peek_header(sock: &TcpStream) -> Result<Option<Header>, HeaderError> {
    let mut buf = [0u8; V2_FIXED + V2_MAX_PAYLOAD];
    let mut seen = 0;
    loop {
        let n = sock.peek(&mut buf).await?;
        if n == 0 {
            return Err(HeaderError::Closed);
        }
        match parse(&buf[..n])? {
            Parsed::Done(h) => return Ok(Some(h)),
            Parsed::Absent => return Ok(None),
            Parsed::Incomplete if n == buf.len() => {
                return Err(Malformed("header longer than the bound".into()).into())
            }
            // peek returns at once while old bytes wait: pause for more.
            Parsed::Incomplete if n == seen => tokio::time::sleep(Duration::from_millis(2)).await,
            Parsed::Incomplete => seen = n,
        }
    }
}

#[cfg(test)]
#[path = "proxy_protocol_tests.rs"]
mod tests;
