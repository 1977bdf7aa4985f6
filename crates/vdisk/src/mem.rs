//! [`MemDisk`]: a disk held in memory. Used for small fixtures and as the
//! reference implementation in the trait test suite.

use crate::{check_range, ReadDisk, Result, WriteDisk};
use std::sync::RwLock;

/// A writable disk whose bytes live in a `Vec<u8>`.
pub struct MemDisk {
    name: String,
    bytes: RwLock<Vec<u8>>,
}

impl MemDisk {
    pub fn new(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        MemDisk {
            name: name.into(),
            bytes: RwLock::new(bytes),
        }
    }

    /// A copy of the whole content.
    pub fn to_vec(&self) -> Vec<u8> {
        self.bytes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ReadDisk for MemDisk {
    fn size(&self) -> u64 {
        self.bytes.read().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let bytes = self.bytes.read().unwrap_or_else(|e| e.into_inner());
        check_range(
            &|| self.describe(),
            offset,
            buf.len() as u64,
            bytes.len() as u64,
        )?;
        let start = offset as usize;
        buf.copy_from_slice(&bytes[start..start + buf.len()]);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("memory disk {}", self.name)
    }
}

impl WriteDisk for MemDisk {
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let mut bytes = self.bytes.write().unwrap_or_else(|e| e.into_inner());
        check_range(
            &|| self.describe(),
            offset,
            buf.len() as u64,
            bytes.len() as u64,
        )?;
        let start = offset as usize;
        bytes[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}
