//! Dispatcher tests and the random-input survival test of the RPC layer.

use super::msg::*;
use super::record::parse_record;
use super::*;
use crate::xdr::{XdrReader, XdrWrite};

struct Echo;
impl RpcProgram for Echo {
    fn program(&self) -> u32 {
        400_000
    }
    fn versions(&self) -> (u32, u32) {
        (2, 3)
    }
    fn call(&self, ctx: &CallContext, args: &[u8], out: &mut Reply) -> Result<(), ProcError> {
        match ctx.header.proc_ {
            0 => Ok(()),
            1 => {
                let v = XdrReader::new(args).u32("arg")?;
                out.put_u32(v + 1);
                Ok(())
            }
            2 => Err(ProcError::Auth(AuthStat::TooWeak)),
            _ => Err(ProcError::ProcUnavail),
        }
    }
}

fn call(prog: u32, vers: u32, proc_: u32, cred: Credential, args: &[u8]) -> Vec<u8> {
    let d = Dispatcher::new(vec![Arc::new(Echo)]);
    let mut msg = Vec::new();
    encode_call(
        &mut msg,
        &CallHeader {
            xid: 77,
            prog,
            vers,
            proc_,
            cred,
        },
    );
    msg.extend_from_slice(args);
    let mut out = Reply::new();
    d.handle(&msg, "127.0.0.1".parse().unwrap(), &mut out)
        .unwrap();
    out.to_vec_from(0)
}

fn accepted(out: &[u8]) -> (u32, Option<(u32, u32)>, Vec<u8>) {
    match decode_reply(out).unwrap() {
        (ReplyHeader::Accepted { stat, mismatch, .. }, rest) => (stat, mismatch, rest.to_vec()),
        other => panic!("not accepted: {other:?}"),
    }
}

#[test]
fn dispatcher_routes_and_reports_every_accept_stat() {
    let (stat, _, body) = accepted(&call(400_000, 3, 1, Credential::None, &[0, 0, 0, 4]));
    assert_eq!((stat, body), (0, vec![0, 0, 0, 5]));
    assert_eq!(accepted(&call(400_001, 3, 0, Credential::None, &[])).0, 1);
    assert_eq!(
        accepted(&call(400_000, 4, 0, Credential::None, &[])).1,
        Some((2, 3))
    );
    assert_eq!(accepted(&call(400_000, 3, 9, Credential::None, &[])).0, 3);
    assert_eq!(accepted(&call(400_000, 3, 1, Credential::None, &[0])).0, 4);
    let out = call(400_000, 3, 2, Credential::None, &[]);
    assert_eq!(
        decode_reply(&out).unwrap().0,
        ReplyHeader::AuthError { xid: 77, stat: 5 }
    );
    let out = call(400_000, 3, 0, Credential::Other { flavor: 6 }, &[]);
    assert_eq!(
        decode_reply(&out).unwrap().0,
        ReplyHeader::AuthError { xid: 77, stat: 1 }
    );
}

/// A xorshift generator: deterministic "random" bytes.
pub(crate) fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// Mutates `seed`: a few flipped bytes, a random truncation, sometimes
/// pure noise.
pub(crate) fn mutate(seed: &[u8], round: usize, next: &mut impl FnMut() -> u64) -> Vec<u8> {
    let mut buf = seed.to_vec();
    if !buf.is_empty() {
        for _ in 0..next() % 4 {
            let i = (next() as usize) % buf.len();
            buf[i] = next() as u8;
        }
    }
    buf.truncate((next() as usize) % (buf.len() + 1));
    if round.is_multiple_of(5) {
        buf = (0..next() % 128).map(|_| next() as u8).collect();
    }
    buf
}

#[test]
fn parsers_survive_random_input() {
    let mut seed = Vec::new();
    encode_call(
        &mut seed,
        &CallHeader {
            xid: 1,
            prog: 400_000,
            vers: 3,
            proc_: 1,
            cred: Credential::Sys(AuthSys {
                stamp: 1,
                machine: "m".into(),
                uid: 1,
                gid: 2,
                gids: vec![3],
            }),
        },
    );
    seed.put_u32(5);
    let mut framed = vec![0x80, 0, 0, seed.len() as u8];
    framed.extend_from_slice(&seed);
    let d = Dispatcher::new(vec![Arc::new(Echo)]);
    let mut next = rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..20_000 {
        let buf = mutate(&seed, round, &mut next);
        let mut out = Reply::new();
        let _ = d.handle(&buf, "10.0.0.1".parse().unwrap(), &mut out);
        let _ = decode_call(&buf);
        let _ = decode_reply(&buf);
        let framed = mutate(&framed, round, &mut next);
        if let Ok(record::Parse::Incomplete { need }) = parse_record(&framed, 1 << 20) {
            assert!(need > framed.len(), "Incomplete without asking for more");
        }
    }
}
