//! The portmapper over UDP: one datagram at a time on its own thread.
//! Datagrams from peers the [`Gate`] does not admit are dropped unanswered.

use super::reactor::{Gate, Note};
use crate::log::ServiceLog;
use crate::rpc::{Dispatcher, Reply};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub(crate) fn udp_loop(
    u: UdpSocket,
    d: Arc<Dispatcher>,
    gate: Arc<Gate>,
    log: Arc<ServiceLog>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 65536];
    let mut out = Reply::new();
    let mut note = Note::default();
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, peer)) = u.recv_from(&mut buf) else {
            continue;
        };
        if !gate.admits(peer.ip()) {
            ServiceLog::bump(&log.refused_peers);
            note.line(&log, || {
                format!("rpc: dropped a datagram from {peer}: not on the allow list")
            });
            continue;
        }
        out.clear();
        let _ = d.handle(&buf[..n], peer.ip(), &mut out);
        if out.total_len() > 0 {
            let _ = u.send_to(&out.to_vec_from(0), peer);
        }
    }
}
