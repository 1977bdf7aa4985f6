//! lifeboat-testvm: a dev/test helper that provides the self-booting test guest
//! and boots it in QEMU.
//!
//! - [`guest_image`] / [`try_guest_fixture`]: build (once per process, cached
//!   under `target/fixtures/guest`) the guest disk with
//!   `scripts/build-test-guest.sh`, which documents the guest's layout and
//!   behaviour (port 22 banner, port 23 one-line command server, serial marker).
//! - [`Vm`]: QEMU (TCG) on a local raw file, an `nfs://` or an `nbd://` drive,
//!   with ports 22 and 23 forwarded to loopback; wait for port 22, run guest
//!   commands, shut down cleanly.
//! - [`read_guest_file`]: read a file from a (powered-off) guest disk with debugfs.
//! - [`virtio_serial_args`]: virtio-serial ports (the guest agent's
//!   [`GUEST_AGENT_PORT`]) served by QEMU on unix sockets;
//!   [`boot_agent_guest`]: the test guest with QMP and its agent's channel.
//! - [`guest_helper_binary`]: the statically linked `lifeboat-guest-helper`
//!   (`scripts/build-guest-helper.sh`), built once per process.
//! - [`PausedQemu`]: QEMU started paused with two small disks and a QMP
//!   socket, for tests that drive QEMU's block layer (no guest boot).
//!
//! Boot one guest at a time per process where possible: the machine has 2 cores
//! and TCG is CPU-bound.

mod error;
mod fixture;
mod guest_helper;
mod paused;
mod serial_ports;
mod vm;

pub use error::{Result, TestVmError};
pub use fixture::{
    fixture_dir, guest_image, read_guest_file, target_dir, try_guest_fixture, workspace_root,
    GuestFixture, FAILED_MARKER, GUEST_PARTITION_OFFSET, READY_MARKER,
};
pub use guest_helper::guest_helper_binary;
pub use paused::{qemu_binary, PausedQemu, DISK_SIZE};
pub use serial_ports::{
    boot_agent_guest, boot_agent_guest_from, virtio_serial_args, AgentGuest, GUEST_AGENT_PORT,
};
pub use vm::{BootOptions, CacheMode, DriveSpec, GuestOutput, Vm};
