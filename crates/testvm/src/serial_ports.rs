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
