//! [`SliceDisk`]: a window `start..start+len` of another disk, such as a
//! partition or one linear segment of a logical volume.

use crate::{check_depth, check_range, Extent, ReadDisk, Result, WriteDisk};
use std::sync::Arc;

/// A byte window of a lower disk, read-only.
pub struct SliceDisk {
    lower: Arc<dyn ReadDisk>,
    start: u64,
    len: u64,
    name: String,
}

impl SliceDisk {
    /// A view of `lower` from `start` for `len` bytes. Fails if the window
    /// does not lie inside `lower` or the stack would be too deep.
    pub fn new(lower: Arc<dyn ReadDisk>, start: u64, len: u64, name: &str) -> Result<Self> {
        let what = format!("slice {name} of {}", lower.describe());
        check_depth(&what, lower.as_ref())?;
        check_range(&|| what.clone(), start, len, lower.size())?;
        Ok(SliceDisk {
            lower,
            start,
            len,
            name: name.to_string(),
        })
    }
}

impl ReadDisk for SliceDisk {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&|| self.describe(), offset, buf.len() as u64, self.len)?;
        self.lower.read_at(buf, self.start + offset)
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let end = offset.saturating_add(len).min(self.len);
        if end <= offset {
            return Ok(Vec::new());
        }
        let mut list = self.lower.extents(self.start + offset, end - offset)?;
        for e in &mut list {
            e.offset -= self.start;
        }
        Ok(list)
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} bytes at {} of {})",
            self.name,
            self.len,
            self.start,
            self.lower.describe()
        )
    }

    fn depth(&self) -> u32 {
        self.lower.depth() + 1
    }
}

/// A writable window of a lower writable disk.
pub struct SliceDiskMut {
    lower: Arc<dyn WriteDisk>,
    start: u64,
    len: u64,
    name: String,
}

impl SliceDiskMut {
    pub fn new(lower: Arc<dyn WriteDisk>, start: u64, len: u64, name: &str) -> Result<Self> {
        let what = format!("slice {name} of {}", lower.describe());
        check_depth(&what, lower.as_ref())?;
        check_range(&|| what.clone(), start, len, lower.size())?;
        Ok(SliceDiskMut {
            lower,
            start,
            len,
            name: name.to_string(),
        })
    }
}

impl ReadDisk for SliceDiskMut {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&|| self.describe(), offset, buf.len() as u64, self.len)?;
        self.lower.read_at(buf, self.start + offset)
    }
    fn describe(&self) -> String {
        format!(
            "{} (writable slice of {})",
            self.name,
            self.lower.describe()
        )
    }
    fn depth(&self) -> u32 {
        self.lower.depth() + 1
    }
}

impl WriteDisk for SliceDiskMut {
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(&|| self.describe(), offset, buf.len() as u64, self.len)?;
        self.lower.write_at(buf, self.start + offset)
    }
    fn flush(&self) -> Result<()> {
        self.lower.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{testsuite, Error, MemDisk};

    #[test]
    fn slice_passes_the_trait_suite() {
        let whole = testsuite::pattern_with_holes(3 << 20, 1 << 19);
        let lower: Arc<dyn ReadDisk> = Arc::new(MemDisk::new("whole", whole.clone()));
        let slice = SliceDisk::new(lower, 12345, 2 << 20, "p1").unwrap();
        testsuite::check_read_disk(&slice, &whole[12345..12345 + (2 << 20)]);
    }

    #[test]
    fn slice_outside_the_disk_is_refused() {
        let lower: Arc<dyn ReadDisk> = Arc::new(MemDisk::new("whole", vec![0; 100]));
        assert!(matches!(
            SliceDisk::new(lower, 50, 51, "p1"),
            Err(Error::OutOfRange { .. })
        ));
    }

    #[test]
    fn writable_slice_passes_the_write_suite() {
        testsuite::check_write_disk(&|content: &[u8]| {
            let mut whole = vec![7u8; content.len() + 1000];
            whole[500..500 + content.len()].copy_from_slice(content);
            let lower: Arc<dyn WriteDisk> = Arc::new(MemDisk::new("whole", whole));
            Box::new(SliceDiskMut::new(lower, 500, content.len() as u64, "p").unwrap())
                as Box<dyn WriteDisk>
        });
    }
}
