//! Disk image formats: one factory ([`open_image`]) detects the format of a
//! file and opens it as a [`lifeboat_vdisk::ReadDisk`]; the consumer decides
//! what to do with it.
//!
//! | format | module | read | write |
//! |---|---|---|---|
//! | raw | `lifeboat_vdisk::FileDisk` | yes (holes via SEEK_DATA) | yes |
//! | qcow2 (v2, v3; backing chains; deflate and zstd compressed clusters) | [`qcow2`] | yes | [`qcow2::Qcow2Writer`] |
//! | VMDK (monolithicSparse, streamOptimized, monolithicFlat, twoGbMaxExtentSparse/Flat) | [`vmdk`] | yes | no |
//! | VHDX (fixed, dynamic) | [`vhdx`] | yes | no |
//!
//! [`ext4_journal`] serves an ext2/3/4 volume with its journal replayed
//! in memory, the one way every reader of ext4 sees such a volume.
//!
//! Format crates do no policy: they never decide where a disk goes, only how
//! its bytes are laid out. What an image may make us open besides itself
//! (backing files, extents) is the caller's list ([`AllowedPaths`], see
//! [`follow`]); by default nothing.

mod detect;
pub mod ext4_journal;
mod fileio;
pub mod follow;
/// Fuzz target bodies (`fuzz/`), replayed by `tests/fuzz_corpus.rs`; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod gpt;
pub mod lvm;
pub mod partition;
pub mod problem;
pub mod qcow2;
pub mod safe_name;
pub mod vhdx;
pub mod vmdk;
pub mod volumes;

pub use detect::{
    choose_format, detect_format, open_image, open_image_as, open_image_with, ChosenBy,
    ImageFormat, OpenOptions, OpenedImage,
};
pub use follow::{refused_link, AllowedPaths, LinkKind, LinkRefused};
pub use problem::{ProblemKind, VolumeProblem};
pub use safe_name::{safe_name, UnsafeName};
