//! An SNTP client (RFC 4330, NTP version 4, client mode) for the clock-skew
//! check: one query over UDP, the reply checked (server mode, our
//! originate timestamp echoed, a stratum from 1 to 15, a synchronized
//! leap indicator), and the offset of this host's clock computed from the
//! four timestamps: ((T2 - T1) + (T3 - T4)) / 2, positive when this host's
//! clock is behind the server's.

use crate::check::Check;
use crate::tcp;
use std::net::UdpSocket;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from 1900-01-01 (NTP's era 0) to 1970-01-01.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// The length of an NTP packet without extensions.
const PACKET_LEN: usize = 48;

/// Why the query gave no offset.
#[derive(Debug, thiserror::Error)]
pub enum SntpError {
    #[error("{target}: {detail}")]
    Network { target: String, detail: String },
    #[error("{target} gave no answer within {timeout:?}")]
    NoAnswer { target: String, timeout: Duration },
    #[error("{target} answered with a packet that is not a usable time: {detail}")]
    BadReply { target: String, detail: String },
}

/// One reading of a server's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SntpReading {
    /// The server's clock minus this host's, seconds.
    pub offset: f64,
    /// Round-trip delay, seconds.
    pub delay: f64,
    /// The server's stratum.
    pub stratum: u8,
}

/// Queries the NTP server `target` (`host:port`).
pub fn sntp_offset(target: &str, timeout: Duration) -> Result<SntpReading, SntpError> {
    let net = |detail: String| SntpError::Network {
        target: target.to_string(),
        detail,
    };
    let addr = tcp::resolve(target).map_err(net)?[0];
    let bind = if addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let sock = UdpSocket::bind(bind).map_err(|e| net(format!("binding a UDP socket: {e}")))?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| net(e.to_string()))?;
    sock.connect(addr)
        .map_err(|e| net(format!("connecting to {addr}: {e}")))?;
    let mut request = [0u8; PACKET_LEN];
    request[0] = 0x23; // LI 0, version 4, mode 3 (client)
    let t1 = ntp_now();
    request[40..48].copy_from_slice(&t1.to_be_bytes());
    sock.send(&request)
        .map_err(|e| net(format!("sending to {addr}: {e}")))?;
    let mut reply = [0u8; 512];
    let n = loop {
        match sock.recv(&mut reply) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(SntpError::NoAnswer {
                    target: target.to_string(),
                    timeout,
                })
            }
            Err(e) => return Err(net(format!("receiving from {addr}: {e}"))),
        }
    };
    let t4 = ntp_now();
    decode_reply(&reply[..n], t1, t4).map_err(|detail| SntpError::BadReply {
        target: target.to_string(),
        detail,
    })
}

/// The reading in `reply` to the request sent at `t1`, received at `t4`.
fn decode_reply(reply: &[u8], t1: u64, t4: u64) -> Result<SntpReading, String> {
    if reply.len() < PACKET_LEN {
        return Err(format!(
            "{} bytes, an NTP packet has {PACKET_LEN}",
            reply.len()
        ));
    }
    let leap = reply[0] >> 6;
    let mode = reply[0] & 7;
    let stratum = reply[1];
    if mode != 4 {
        return Err(format!("mode {mode}, not a server reply (4)"));
    }
    if stratum == 0 {
        let code = String::from_utf8_lossy(&reply[12..16]).into_owned();
        return Err(format!("a kiss-o'-death packet ({code:?})"));
    }
    if stratum > 15 {
        return Err(format!("stratum {stratum}: the server is not synchronized"));
    }
    if leap == 3 {
        return Err("leap indicator 3: the server's clock is not synchronized".into());
    }
    let stamp = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&reply[at..at + 8]);
        u64::from_be_bytes(b)
    };
    if stamp(24) != t1 {
        return Err("the reply does not echo our request's timestamp".into());
    }
    let (t2, t3) = (stamp(32), stamp(40));
    let secs = |later: u64, earlier: u64| diff_seconds(later, earlier);
    Ok(SntpReading {
        offset: (secs(t2, t1) + secs(t3, t4)) / 2.0,
        delay: secs(t4, t1) - secs(t3, t2),
        stratum,
    })
}

/// `later - earlier` in seconds, NTP 64-bit timestamps (wrapping, so the
/// era boundary of 2036 does not matter for differences under 68 years).
fn diff_seconds(later: u64, earlier: u64) -> f64 {
    later.wrapping_sub(earlier) as i64 as f64 / 4_294_967_296.0
}

/// Now as an NTP timestamp (32.32 fixed point from 1900).
fn ntp_now() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(now.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The clock-skew check against `target`: pass within `max_skew` seconds.
pub fn check_ntp(target: &str, max_skew: f64, timeout: Duration) -> Check {
    const NAME: &str = "clock skew (NTP)";
    match sntp_offset(target, timeout) {
        Ok(r) if r.offset.abs() <= max_skew => Check::pass(
            NAME,
            target,
            format!(
                "this clock is {:+.3} s from the server's (stratum {}, round trip {:.1} ms), within {max_skew} s",
                -r.offset,
                r.stratum,
                r.delay * 1000.0
            ),
        ),
        Ok(r) => Check::fail(
            NAME,
            target,
            format!(
                "this clock is {:+.3} s from the server's (stratum {}), more than {max_skew} s",
                -r.offset, r.stratum
            ),
            "synchronize this host's clock (chrony or systemd-timesyncd) with the same NTP source as the server",
        ),
        Err(e) => Check::fail(
            NAME,
            target,
            e.to_string(),
            "open UDP 123 to the NTP server, or name one that answers (--ntp HOST[:PORT])",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(t1: u64, t2: u64, t3: u64, first: u8, stratum: u8) -> [u8; PACKET_LEN] {
        let mut r = [0u8; PACKET_LEN];
        r[0] = first;
        r[1] = stratum;
        r[24..32].copy_from_slice(&t1.to_be_bytes());
        r[32..40].copy_from_slice(&t2.to_be_bytes());
        r[40..48].copy_from_slice(&t3.to_be_bytes());
        r
    }

    #[test]
    fn the_offset_and_delay_come_from_the_four_timestamps() {
        let s = 1u64 << 32;
        // Server 10 s ahead; 0.5 s each way; 0 s at the server.
        let t1 = 1000 * s;
        let t2 = t1 + 10 * s + s / 2;
        let t3 = t2;
        let t4 = t1 + s;
        let r = decode_reply(&reply(t1, t2, t3, 0x24, 2), t1, t4).unwrap();
        assert!((r.offset - 10.0).abs() < 1e-6, "{r:?}");
        assert!((r.delay - 1.0).abs() < 1e-6, "{r:?}");
        assert_eq!(r.stratum, 2);
    }

    #[test]
    fn unusable_replies_are_refused_with_the_reason() {
        let t1 = 5u64 << 32;
        let cases = [
            (reply(t1, t1, t1, 0x23, 2), "mode 3"),
            (reply(t1, t1, t1, 0x24, 0), "kiss"),
            (reply(t1, t1, t1, 0x24, 16), "stratum 16"),
            (reply(t1, t1, t1, 0xE4, 2), "leap indicator 3"),
            (reply(t1 + 1, t1, t1, 0x24, 2), "echo"),
        ];
        for (r, want) in cases {
            let err = decode_reply(&r, t1, t1).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        assert!(decode_reply(&[0x24; 20], t1, t1)
            .unwrap_err()
            .contains("20 bytes"));
    }
}
