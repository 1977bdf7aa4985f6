//! QEMU arguments for virtio-serial ports whose host side is a unix socket
//! QEMU serves: the guest agent's channel (`org.qemu.guest_agent.0`, which
//! the test guest's qemu-ga opens) and any other named port.

use std::path::Path;

/// The port name qemu-ga in the test guest listens on.
pub const GUEST_AGENT_PORT: &str = "org.qemu.guest_agent.0";

/// `-device virtio-serial` and, per `(socket, port name)`, a
/// `-chardev socket,server=on,wait=off` and a `virtserialport` on it.
pub fn virtio_serial_args(ports: &[(&Path, &str)]) -> Vec<String> {
    let mut args = vec!["-device".to_string(), "virtio-serial".to_string()];
    for (i, (socket, name)) in ports.iter().enumerate() {
        args.push("-chardev".into());
        args.push(format!(
            "socket,path={},server=on,wait=off,id=lifeboat-port{i}",
            socket.display().to_string().replace(',', ",,")
        ));
        args.push("-device".into());
        args.push(format!(
            "virtserialport,chardev=lifeboat-port{i},name={name}"
        ));
    }
    args
}

/// The test guest booted with a QMP socket and the guest agent's channel.
#[derive(Debug)]
pub struct AgentGuest {
    pub vm: crate::Vm,
    /// `DIR/qmp.sock`.
    pub qmp: std::path::PathBuf,
    /// `DIR/qga.sock`, the host side of [`GUEST_AGENT_PORT`].
    pub agent: std::path::PathBuf,
}

/// Boots a copy of the test guest (`DIR/guest.raw`) with `-qmp DIR/qmp.sock`,
/// the agent's channel on `DIR/qga.sock` and `forward_ports` forwarded
/// ([`crate::Vm::forwarded_port`]); returns once port 22 answers (the agent
/// may need a few seconds more: ping it).
///
/// # Panics
/// When the guest cannot be booted (a test helper).
pub fn boot_agent_guest(dir: &Path, forward_ports: &[u16]) -> AgentGuest {
    let disk = dir.join("guest.raw");
    std::fs::copy(crate::guest_image(), &disk)
        .unwrap_or_else(|e| panic!("copying the guest image to {}: {e}", disk.display()));
    boot_agent_guest_from(dir, &disk, forward_ports, Vec::new())
}

/// [`boot_agent_guest`] from the boot disk `disk` (a copy of the test
/// guest's image), with `extra` QEMU arguments (more disks).
///
/// # Panics
/// When the guest cannot be booted (a test helper).
pub fn boot_agent_guest_from(
    dir: &Path,
    disk: &Path,
    forward_ports: &[u16],
    extra: Vec<String>,
) -> AgentGuest {
    let (qmp, agent) = (dir.join("qmp.sock"), dir.join("qga.sock"));
    let mut extra_args = vec![
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=off", qmp.display()),
    ];
    extra_args.extend(extra);
    extra_args.extend(virtio_serial_args(&[(&agent, GUEST_AGENT_PORT)]));
    let opts = crate::BootOptions {
        extra_args,
        forward_ports: forward_ports.to_vec(),
        ..crate::BootOptions::default()
    };
    let mut vm = crate::Vm::boot(crate::DriveSpec::file(disk), &opts)
        .unwrap_or_else(|e| panic!("starting the test guest: {e}"));
    vm.wait_for_port22(std::time::Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("the test guest did not boot: {e}"));
    AgentGuest { vm, qmp, agent }
}
