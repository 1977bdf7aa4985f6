//! The proxy-helper protocol, inside the TLS session.
//!
//! Every message is one frame: a 4-byte big-endian length, then that many
//! bytes: a tag byte and the tag's payload. Frames are at most
//! [`MAX_FRAME`] bytes; a longer length is refused before anything is
//! allocated.
//!
//! ```text
//! proxy -> helper                      helper -> proxy
//! 0x01 Run   phase:u8 timeout_ms:u32   0x10 Line     stream:u8 text:utf8 (repeated)
//!                                      0x11 Exited   code:i32  \
//!                                      0x12 Killed   signal:i32 | one of these
//!                                      0x13 TimedOut after_ms:u32 | ends a Run
//!                                      0x14 NotRun   reason:utf8 /
//! 0x02 Quit                            0x15 Bye (then the helper exits)
//!                                      0x16 Hello (first, right after the handshake)
//! ```
//!
//! Phases: 1 pre-freeze, 2 post-thaw. Streams: 1 stdout, 2 stderr. Decoding
//! never panics: short input is [`WireError::Truncated`], a bad length,
//! tag or payload has its own error.

use std::io::{Read, Write};
use std::time::Duration;

use crate::layout;

/// The largest frame (tag and payload) either side sends or accepts.
pub const MAX_FRAME: usize = 64 << 10;

/// The longest line of script output sent in one [`Reply::Line`] (longer
/// lines are split).
pub const MAX_LINE: usize = 16 << 10;

/// What is wrong with a frame, or with the stream it came on.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The frame ended early.
    #[error("truncated frame: {need} bytes needed, {have} received")]
    Truncated { need: usize, have: usize },
    /// The length field is larger than [`MAX_FRAME`].
    #[error("frame of {len} bytes announced, at most {MAX_FRAME} accepted")]
    TooLong { len: usize },
    /// A frame of length zero (no tag).
    #[error("empty frame (no message tag)")]
    Empty,
    /// A tag this side does not know.
    #[error("unknown message tag {tag:#04x}")]
    UnknownTag { tag: u8 },
    /// The payload does not fit the tag.
    #[error("message {tag:#04x}: {reason}")]
    BadPayload { tag: u8, reason: String },
    /// The peer closed the session between frames.
    #[error("the peer closed the session")]
    Closed,
    /// Reading or writing the session failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Which script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    PreFreeze,
    PostThaw,
}

impl Phase {
    /// The script's file name in the helper's directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Phase::PreFreeze => layout::PRE_FREEZE,
            Phase::PostThaw => layout::POST_THAW,
        }
    }

    fn code(self) -> u8 {
        match self {
            Phase::PreFreeze => 1,
            Phase::PostThaw => 2,
        }
    }

    fn from_code(tag: u8, code: u8) -> Result<Phase, WireError> {
        match code {
            1 => Ok(Phase::PreFreeze),
            2 => Ok(Phase::PostThaw),
            _ => Err(bad(tag, format!("unknown phase {code}"))),
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.file_name())
    }
}

/// Which output stream of a script a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A proxy's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Run the phase's script, killing it (and its process group) after `timeout`.
    Run { phase: Phase, timeout: Duration },
    /// End the session: the helper answers [`Reply::Bye`] and exits.
    Quit,
}

/// How a script ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptEnd {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Killed(i32),
    /// It was still running at its timeout: its process group was killed.
    TimedOut(Duration),
    /// It did not start.
    NotRun(String),
}

impl ScriptEnd {
    /// Exited with status 0.
    pub fn succeeded(&self) -> bool {
        matches!(self, ScriptEnd::Exited(0))
    }
}

impl std::fmt::Display for ScriptEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScriptEnd::Exited(c) => write!(f, "exited with status {c}"),
            ScriptEnd::Killed(s) => write!(f, "was killed by signal {s}"),
            ScriptEnd::TimedOut(t) => write!(f, "timed out after {}s and was killed", secs(*t)),
            ScriptEnd::NotRun(why) => write!(f, "did not run: {why}"),
        }
    }
}

/// Seconds, with milliseconds when not whole.
fn secs(t: Duration) -> String {
    if t.subsec_millis() == 0 {
        t.as_secs().to_string()
    } else {
        format!("{:.3}", t.as_secs_f64())
    }
}

/// A helper's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// One line of the running script's output (without its newline).
    Line { stream: Stream, text: String },
    /// The script ended.
    End(ScriptEnd),
    /// The session ends.
    Bye,
    /// The helper accepted the proxy (sent once, first: with TLS 1.3 the
    /// proxy learns only from this that its certificate was accepted).
    Hello,
}

/// Encoding and decoding of one message kind.
pub trait Message: Sized {
    /// Appends the tag and payload.
    fn encode_body(&self, out: &mut Vec<u8>);
    /// Reads the tag and payload of one frame.
    fn decode_body(body: &[u8]) -> Result<Self, WireError>;

    /// The whole frame (length, tag, payload).
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![0; 4];
        self.encode_body(&mut out);
        let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
        out.splice(0..4, len.to_be_bytes());
        out
    }
}

fn bad(tag: u8, reason: String) -> WireError {
    WireError::BadPayload { tag, reason }
}

/// Splits the first `N` bytes off `rest`.
fn take<const N: usize>(tag: u8, rest: &mut &[u8]) -> Result<[u8; N], WireError> {
    let (head, tail) = rest
        .split_first_chunk::<N>()
        .ok_or_else(|| bad(tag, format!("{} bytes of payload, {N} needed", rest.len())))?;
    *rest = tail;
    Ok(*head)
}

fn done(tag: u8, rest: &[u8]) -> Result<(), WireError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(bad(
            tag,
            format!("{} bytes of payload too many", rest.len()),
        ))
    }
}

fn text(tag: u8, rest: &[u8]) -> Result<String, WireError> {
    String::from_utf8(rest.to_vec()).map_err(|e| bad(tag, format!("text is not UTF-8: {e}")))
}

fn split_tag(body: &[u8]) -> Result<(u8, &[u8]), WireError> {
    body.split_first()
        .map(|(t, r)| (*t, r))
        .ok_or(WireError::Empty)
}

impl Message for Request {
    fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Request::Run { phase, timeout } => {
                out.push(0x01);
                out.push(phase.code());
                let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
                out.extend_from_slice(&ms.to_be_bytes());
            }
            Request::Quit => out.push(0x02),
        }
    }

    fn decode_body(body: &[u8]) -> Result<Request, WireError> {
        let (tag, mut rest) = split_tag(body)?;
        let msg = match tag {
            0x01 => {
                let [phase] = take::<1>(tag, &mut rest)?;
                let ms = u32::from_be_bytes(take::<4>(tag, &mut rest)?);
                Request::Run {
                    phase: Phase::from_code(tag, phase)?,
                    timeout: Duration::from_millis(u64::from(ms)),
                }
            }
            0x02 => Request::Quit,
            tag => return Err(WireError::UnknownTag { tag }),
        };
        done(tag, rest)?;
        Ok(msg)
    }
}

impl Message for Reply {
    fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Line { stream, text } => {
                out.push(0x10);
                out.push(match stream {
                    Stream::Stdout => 1,
                    Stream::Stderr => 2,
                });
                out.extend_from_slice(text.as_bytes());
            }
            Reply::End(ScriptEnd::Exited(c)) => {
                out.push(0x11);
                out.extend_from_slice(&c.to_be_bytes());
            }
            Reply::End(ScriptEnd::Killed(s)) => {
                out.push(0x12);
                out.extend_from_slice(&s.to_be_bytes());
            }
            Reply::End(ScriptEnd::TimedOut(t)) => {
                out.push(0x13);
                let ms = u32::try_from(t.as_millis()).unwrap_or(u32::MAX);
                out.extend_from_slice(&ms.to_be_bytes());
            }
            Reply::End(ScriptEnd::NotRun(why)) => {
                out.push(0x14);
                out.extend_from_slice(why.as_bytes());
            }
            Reply::Bye => out.push(0x15),
            Reply::Hello => out.push(0x16),
        }
    }

    fn decode_body(body: &[u8]) -> Result<Reply, WireError> {
        let (tag, mut rest) = split_tag(body)?;
        let msg = match tag {
            0x10 => {
                let [s] = take::<1>(tag, &mut rest)?;
                let stream = match s {
                    1 => Stream::Stdout,
                    2 => Stream::Stderr,
                    _ => return Err(bad(tag, format!("unknown stream {s}"))),
                };
                let t = text(tag, rest)?;
                rest = &[];
                Reply::Line { stream, text: t }
            }
            0x11 => Reply::End(ScriptEnd::Exited(i32::from_be_bytes(take::<4>(
                tag, &mut rest,
            )?))),
            0x12 => Reply::End(ScriptEnd::Killed(i32::from_be_bytes(take::<4>(
                tag, &mut rest,
            )?))),
            0x13 => {
                let ms = u32::from_be_bytes(take::<4>(tag, &mut rest)?);
                Reply::End(ScriptEnd::TimedOut(Duration::from_millis(u64::from(ms))))
            }
            0x14 => {
                let why = text(tag, rest)?;
                rest = &[];
                Reply::End(ScriptEnd::NotRun(why))
            }
            0x15 => Reply::Bye,
            0x16 => Reply::Hello,
            tag => return Err(WireError::UnknownTag { tag }),
        };
        done(tag, rest)?;
        Ok(msg)
    }
}

/// Decodes the frame at the start of `buf`: the message and the bytes it used.
pub fn decode<M: Message>(buf: &[u8]) -> Result<(M, usize), WireError> {
    let header = buf.first_chunk::<4>().ok_or(WireError::Truncated {
        need: 4,
        have: buf.len(),
    })?;
    let len = frame_len(*header)?;
    let body = buf.get(4..4 + len).ok_or(WireError::Truncated {
        need: 4 + len,
        have: buf.len(),
    })?;
    Ok((M::decode_body(body)?, 4 + len))
}

fn frame_len(header: [u8; 4]) -> Result<usize, WireError> {
    let len = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
    if len > MAX_FRAME {
        return Err(WireError::TooLong { len });
    }
    Ok(len)
}

/// Reads one message. A session closed before a frame starts is
/// [`WireError::Closed`]; closed inside one, [`WireError::Truncated`].
pub fn read_message<M: Message>(r: &mut impl Read) -> Result<M, WireError> {
    let mut header = [0u8; 4];
    let got = read_full(r, &mut header)?;
    if got == 0 {
        return Err(WireError::Closed);
    }
    if got < 4 {
        return Err(WireError::Truncated { need: 4, have: got });
    }
    let len = frame_len(header)?;
    let mut body = vec![0u8; len];
    let got = read_full(r, &mut body)?;
    if got < len {
        return Err(WireError::Truncated {
            need: 4 + len,
            have: 4 + got,
        });
    }
    M::decode_body(&body)
}

/// Writes one message and flushes.
pub fn write_message<M: Message>(w: &mut impl Write, msg: &M) -> Result<(), WireError> {
    w.write_all(&msg.encode())?;
    w.flush()?;
    Ok(())
}

/// Reads until `buf` is full or the stream ends; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // rustls reports a peer that closed without close_notify so.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(got)
}

/// Splits script output into lines of at most [`MAX_LINE`] bytes (at a
/// character boundary), dropping the line ends.
pub fn split_line(line: &str) -> Vec<String> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut out = Vec::new();
    let mut rest = line;
    while rest.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head.to_string());
        rest = tail;
    }
    out.push(rest.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_replies() -> Vec<Reply> {
        vec![
            Reply::Line {
                stream: Stream::Stdout,
                text: "hello ünïcode".into(),
            },
            Reply::Line {
                stream: Stream::Stderr,
                text: String::new(),
            },
            Reply::End(ScriptEnd::Exited(-3)),
            Reply::End(ScriptEnd::Killed(9)),
            Reply::End(ScriptEnd::TimedOut(Duration::from_millis(2500))),
            Reply::End(ScriptEnd::NotRun("no such file".into())),
            Reply::Bye,
            Reply::Hello,
        ]
    }

    fn all_requests() -> Vec<Request> {
        vec![
            Request::Run {
                phase: Phase::PreFreeze,
                timeout: Duration::from_secs(30),
            },
            Request::Run {
                phase: Phase::PostThaw,
                timeout: Duration::from_millis(1),
            },
            Request::Quit,
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in all_replies() {
            let f = m.encode();
            assert_eq!(decode::<Reply>(&f).unwrap(), (m.clone(), f.len()));
            assert_eq!(read_message::<Reply>(&mut f.as_slice()).unwrap(), m);
        }
        for m in all_requests() {
            let f = m.encode();
            assert_eq!(decode::<Request>(&f).unwrap(), (m, f.len()));
        }
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        for m in all_replies() {
            let f = m.encode();
            for cut in 0..f.len() {
                let err = decode::<Reply>(&f[..cut]).unwrap_err();
                assert!(matches!(err, WireError::Truncated { .. }), "{cut}: {err}");
                let err = read_message::<Reply>(&mut &f[..cut]).unwrap_err();
                let want = if cut == 0 {
                    matches!(err, WireError::Closed)
                } else {
                    matches!(err, WireError::Truncated { .. })
                };
                assert!(want, "{cut}: {err}");
            }
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_reading_it() {
        for len in [MAX_FRAME as u32 + 1, u32::MAX] {
            let mut f = len.to_be_bytes().to_vec();
            f.push(0x15);
            assert!(matches!(
                decode::<Reply>(&f).unwrap_err(),
                WireError::TooLong { .. }
            ));
            assert!(matches!(
                read_message::<Request>(&mut f.as_slice()).unwrap_err(),
                WireError::TooLong { .. }
            ));
        }
    }

    #[test]
    fn bad_tags_and_payloads_are_typed_errors() {
        let frame = |body: &[u8]| {
            let mut f = (body.len() as u32).to_be_bytes().to_vec();
            f.extend_from_slice(body);
            f
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (frame(&[]), "empty"),
            (frame(&[0x7f]), "unknown"),
            (frame(&[0x10, 3, b'x']), "stream"),
            (frame(&[0x10, 1, 0xff, 0xfe]), "UTF-8"),
            (frame(&[0x11, 0, 0]), "payload"),
            (frame(&[0x11, 0, 0, 0, 0, 0]), "too many"),
            (frame(&[0x15, 1]), "too many"),
        ];
        for (f, want) in cases {
            let err = decode::<Reply>(&f).unwrap_err();
            assert!(err.to_string().contains(want), "{f:?}: {err}");
        }
        let err = decode::<Request>(&frame(&[0x01, 7, 0, 0, 0, 1])).unwrap_err();
        assert!(err.to_string().contains("phase 7"), "{err}");
        // A reply tag is not a request.
        let err = decode::<Request>(&Reply::Bye.encode()).unwrap_err();
        assert!(matches!(err, WireError::UnknownTag { tag: 0x15 }), "{err}");
    }

    #[test]
    fn long_lines_are_split_at_character_boundaries() {
        let long = "é".repeat(MAX_LINE);
        let parts = split_line(&format!("{long}\r\n"));
        assert!(parts.iter().all(|p| p.len() <= MAX_LINE), "{}", parts.len());
        assert_eq!(parts.concat(), long);
        assert_eq!(split_line("x\n"), vec!["x".to_string()]);
        // A full line is a valid frame.
        let m = Reply::Line {
            stream: Stream::Stdout,
            text: parts[0].clone(),
        };
        assert!(m.encode().len() <= MAX_FRAME + 4);
    }
}
