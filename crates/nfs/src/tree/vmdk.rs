//! The VMDK descriptor written beside each flat disk file.
//!
//! ESXi keeps a disk as a pair: `<name>.vmdk` (a small text descriptor) and
//! `<name>-flat.vmdk` (the raw bytes). The descriptor generated here uses
//! `createType="vmfs"` with one `VMFS` extent, which is what ESXi writes
//! for flat disks on a datastore and what it accepts without conversion
//! (hosted types such as `monolithicFlat` need `vmkfstools -i` on ESXi);
//! QEMU's vmdk driver reads both. Sizes are in 512-byte sectors; a disk
//! whose size is not a multiple of 512 is described by its whole sectors.

/// The descriptor text of a flat file `flat_name` of `size` bytes.
/// `cid` is the content id (any value that changes when the content would;
/// derived from the session here).
pub fn descriptor(flat_name: &str, size: u64, cid: u32) -> String {
    let sectors = size / 512;
    let heads = 255u64;
    let per_track = 63u64;
    let cylinders = (sectors / (heads * per_track)).clamp(1, 65535);
    format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         encoding=\"UTF-8\"\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"vmfs\"\n\
         \n\
         # Extent description\n\
         RW {sectors} VMFS \"{flat_name}\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.adapterType = \"lsilogic\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"{heads}\"\n\
         ddb.geometry.sectors = \"{per_track}\"\n\
         ddb.thinProvisioned = \"1\"\n\
         ddb.virtualHWVersion = \"14\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_names_the_flat_file_and_its_sectors() {
        let d = descriptor("web01-disk0-flat.vmdk", 8 << 30, 0xabc);
        assert!(d.contains("RW 16777216 VMFS \"web01-disk0-flat.vmdk\"\n"));
        assert!(d.contains("CID=00000abc\n"));
        assert!(d.contains("createType=\"vmfs\""));
        assert!(d.contains("ddb.geometry.cylinders = \"1044\""));
    }
}
