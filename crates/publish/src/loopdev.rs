//! Loop devices through the loop driver's ioctls: what `losetup --find
//! --show --read-only --offset O --sizelimit S FILE`, `losetup
//! --direct-io=on DEV` and `losetup -d DEV` do, without a process each
//! (each was 20-35 ms of a publish, most of it process start-up).
//!
//! A free device comes from `/dev/loop-control` (`LOOP_CTL_GET_FREE`, which
//! adds a device when all are busy); without it (a container given only
//! some `/dev/loopN` nodes) every `/dev/loopN` is tried in turn. The device
//! is bound with one `LOOP_CONFIGURE` (offset, size limit and read-only in
//! one call, Linux 5.8+); a device taken by another process meanwhile
//! answers `EBUSY` and the next one is tried.

use crate::error::{Error, Result};
use rustix::ioctl::{ioctl, opcode, IntegerSetter, Ioctl, IoctlOutput, NoArg, Opcode, Setter};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The loop driver's control device.
pub const LOOP_CONTROL: &str = "/dev/loop-control";

// <linux/loop.h>: the loop ioctls are plain numbers in group 'L' (0x4C).
const LOOP_CTL_GET_FREE: Opcode = opcode::none(b'L', 0x82);
const LOOP_CONFIGURE: Opcode = opcode::none(b'L', 0x0A);
const LOOP_SET_DIRECT_IO: Opcode = opcode::none(b'L', 0x08);
const LOOP_CLR_FD: Opcode = opcode::none(b'L', 0x01);
const LO_FLAGS_READ_ONLY: u32 = 1;
/// How many devices taken by someone else between "free" and "configure"
/// are tolerated before giving up.
const BUSY_RETRIES: usize = 64;

/// `struct loop_info64` of <linux/loop.h>.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` of <linux/loop.h>.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Attaches a read-only loop device over `size` bytes at `offset` of
/// `file`, with direct I/O to the file where it allows it; returns
/// `/dev/loopN`.
pub fn attach(file: &Path, offset: u64, size: u64) -> Result<String> {
    let backing = File::open(file).map_err(|e| Error::io(file, e))?;
    let config = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info: LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: offset,
            lo_sizelimit: size,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: LO_FLAGS_READ_ONLY,
            lo_file_name: file_name_field(file),
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        },
        reserved: [0; 8],
    };
    let mut candidates = Candidates::new();
    let mut busy = Vec::new();
    for _ in 0..BUSY_RETRIES {
        let Some(dev) = candidates.next()? else {
            break;
        };
        let device = open_device(&dev)?;
        // SAFETY: LOOP_CONFIGURE's opcode with the type it reads: one
        // `struct loop_config`, which `LoopConfig` lays out exactly
        // (repr(C), the kernel's field types).
        let configure = unsafe { Setter::<LOOP_CONFIGURE, LoopConfig>::new(config) };
        // SAFETY: the kernel only reads the `LoopConfig` the setter owns;
        // its `fd` is `backing`, open until after the call.
        let configured = unsafe { ioctl(&device, configure) };
        match configured {
            Ok(()) => {
                // Direct I/O from the loop device to the FUSE disk file:
                // without it every block is cached twice (the filesystem's
                // page cache and the disk file's) and copied once more;
                // find + cat of the bench tree took 26-27 s buffered, 20-21
                // s direct. A file that refuses it leaves the device
                // buffered, which works.
                // SAFETY: LOOP_SET_DIRECT_IO's opcode; it takes 0 or 1 by
                // value.
                let direct = unsafe { IntegerSetter::<LOOP_SET_DIRECT_IO>::new_usize(1) };
                // SAFETY: as above, no user memory is passed.
                let _ = unsafe { ioctl(&device, direct) };
                return Ok(dev.display().to_string());
            }
            Err(rustix::io::Errno::BUSY) => busy.push(dev.display().to_string()),
            Err(e) => {
                return Err(Error::Command {
                    command: format!(
                        "LOOP_CONFIGURE {} over {} (offset {offset}, size {size}, read-only)",
                        dev.display(),
                        file.display()
                    ),
                    detail: std::io::Error::from(e).to_string(),
                })
            }
        }
    }
    Err(Error::Missing(format!(
        "a free loop device (all are in use and none can be added through \
         {LOOP_CONTROL}; busy: {})",
        if busy.is_empty() {
            "no /dev/loopN at all".to_string()
        } else {
            busy.join(", ")
        }
    )))
}

/// Detaches `dev` (autoclear when it is still in use: the kernel frees it
/// when the last user closes it).
pub fn detach(dev: &str) -> Result<()> {
    let device = open_device(Path::new(dev))?;
    // SAFETY: LOOP_CLR_FD's opcode; it takes no argument.
    let clear = unsafe { NoArg::<LOOP_CLR_FD>::new() };
    // SAFETY: no user memory is passed.
    unsafe { ioctl(&device, clear) }.map_err(|e| Error::Command {
        command: format!("LOOP_CLR_FD {dev}"),
        detail: std::io::Error::from(e).to_string(),
    })
}

/// Opens a loop device for its ioctls (read-write as losetup does, else
/// read-only).
fn open_device(dev: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .or_else(|_| File::open(dev))
        .map_err(|e| Error::io(dev, e))
}

/// The backing file's name as `lo_file_name` holds it (what `losetup -a`
/// shows): the path, cut to 63 bytes, NUL-terminated.
fn file_name_field(file: &Path) -> [u8; 64] {
    let mut field = [0u8; 64];
    let bytes = file.as_os_str().as_encoded_bytes();
    let n = bytes.len().min(63);
    field[..n].copy_from_slice(&bytes[..n]);
    field
}

/// The loop devices to try, in order: what `/dev/loop-control` says is
/// free (asked again after each busy answer), or, without it, every
/// `/dev/loopN` in number order.
enum Candidates {
    Control(File),
    Listed(std::vec::IntoIter<PathBuf>),
}

impl Candidates {
    fn new() -> Self {
        match File::open(LOOP_CONTROL) {
            Ok(control) => Candidates::Control(control),
            Err(_) => Candidates::Listed(listed_loop_devices(Path::new("/dev")).into_iter()),
        }
    }

    fn next(&mut self) -> Result<Option<PathBuf>> {
        match self {
            Candidates::Control(control) => {
                // SAFETY: see `GetFree`.
                match unsafe { ioctl(&*control, GetFree) } {
                    Ok(n) => Ok(Some(PathBuf::from(format!("/dev/loop{n}")))),
                    Err(e) => Err(Error::Command {
                        command: format!("LOOP_CTL_GET_FREE {LOOP_CONTROL}"),
                        detail: std::io::Error::from(e).to_string(),
                    }),
                }
            }
            Candidates::Listed(list) => Ok(list.next()),
        }
    }
}

/// `LOOP_CTL_GET_FREE`: no argument; the return value is the number of a
/// free loop device (rustix's `NoArg` drops it).
struct GetFree;

// SAFETY: the ioctl reads and writes no user memory (null pointer, not
// mutating); the output is the call's non-negative return value.
unsafe impl Ioctl for GetFree {
    type Output = u32;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        LOOP_CTL_GET_FREE
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        std::ptr::null_mut()
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _: *mut std::ffi::c_void,
    ) -> rustix::io::Result<u32> {
        u32::try_from(out).map_err(|_| rustix::io::Errno::INVAL)
    }
}

/// Every `loopN` block device in `dev_dir`, by number.
pub(crate) fn listed_loop_devices(dev_dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dev_dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_block_device()))
                .filter_map(|e| {
                    let name = e.file_name();
                    let n = name.to_str()?.strip_prefix("loop")?.parse().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}
