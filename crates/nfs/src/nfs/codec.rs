//! XDR forms of the NFSv3 types (RFC 1813 section 2.6): fattr3,
//! post_op_attr, wcc_data, post_op_fh3, sattr3, createhow3, diropargs3.
//!
//! Replies never send pre-operation attributes (pre_op_attr is FALSE), which
//! RFC 1813 allows; post-operation attributes are sent whenever known.

use crate::backend::{Attr, CreateHow, SetAttr, SetTime, Time, MAX_FH, MAX_NAME};
use crate::xdr::{XdrReader, XdrResult, XdrWrite};

/// The fsid every attribute carries ("LB" + 1).
pub const FSID: u64 = 0x4c42_0001;
/// Encoded size of a fattr3.
pub const FATTR3_LEN: usize = 84;

pub fn put_time(out: &mut Vec<u8>, t: Time) {
    out.put_u32(t.secs);
    out.put_u32(t.nsecs);
}

pub fn put_fattr(out: &mut Vec<u8>, a: &Attr) {
    out.put_u32(a.ftype as u32);
    out.put_u32(a.mode);
    out.put_u32(a.nlink);
    out.put_u32(a.uid);
    out.put_u32(a.gid);
    out.put_u64(a.size);
    out.put_u64(a.used);
    out.put_u32(0); // rdev.specdata1
    out.put_u32(0); // rdev.specdata2
    out.put_u64(FSID);
    out.put_u64(a.fileid);
    put_time(out, a.atime);
    put_time(out, a.mtime);
    put_time(out, a.ctime);
}

/// post_op_attr: TRUE + fattr3, or FALSE.
pub fn put_post_attr(out: &mut Vec<u8>, a: Option<&Attr>) {
    match a {
        Some(a) => {
            out.put_bool(true);
            put_fattr(out, a);
        }
        None => out.put_bool(false),
    }
}

/// wcc_data without pre-operation attributes.
pub fn put_wcc(out: &mut Vec<u8>, after: Option<&Attr>) {
    out.put_bool(false);
    put_post_attr(out, after);
}

/// post_op_fh3: TRUE + handle.
pub fn put_post_fh(out: &mut Vec<u8>, fh: &[u8]) {
    out.put_bool(true);
    out.put_opaque(fh);
}

/// An nfs_fh3.
pub fn get_fh<'a>(r: &mut XdrReader<'a>) -> XdrResult<&'a [u8]> {
    r.opaque(MAX_FH as u32, "nfs_fh3")
}

/// diropargs3: a directory handle and a name.
pub fn get_dirop<'a>(r: &mut XdrReader<'a>) -> XdrResult<(&'a [u8], &'a str)> {
    let fh = get_fh(r)?;
    let name = r.string(MAX_NAME, "filename3")?;
    Ok((fh, name))
}

fn get_time(r: &mut XdrReader) -> XdrResult<Time> {
    Ok(Time {
        secs: r.u32("nfstime3 seconds")?,
        nsecs: r.u32("nfstime3 nseconds")?,
    })
}

fn get_set_time(r: &mut XdrReader) -> XdrResult<SetTime> {
    match r.u32("time_how")? {
        0 => Ok(SetTime::DontChange),
        1 => Ok(SetTime::ServerTime),
        2 => Ok(SetTime::Client(get_time(r)?)),
        value => Err(crate::xdr::XdrError::BadValue {
            what: "time_how",
            value,
        }),
    }
}

fn get_opt_u32(r: &mut XdrReader, what: &'static str) -> XdrResult<Option<u32>> {
    Ok(if r.bool(what)? {
        Some(r.u32(what)?)
    } else {
        None
    })
}

pub fn get_sattr(r: &mut XdrReader) -> XdrResult<SetAttr> {
    Ok(SetAttr {
        mode: get_opt_u32(r, "set_mode3")?,
        uid: get_opt_u32(r, "set_uid3")?,
        gid: get_opt_u32(r, "set_gid3")?,
        size: if r.bool("set_size3")? {
            Some(r.u64("size3")?)
        } else {
            None
        },
        atime: get_set_time(r)?,
        mtime: get_set_time(r)?,
    })
}

/// sattrguard3: the ctime the client expects, if it checks.
pub fn get_guard(r: &mut XdrReader) -> XdrResult<Option<Time>> {
    Ok(if r.bool("sattrguard3")? {
        Some(get_time(r)?)
    } else {
        None
    })
}

pub fn get_createhow(r: &mut XdrReader) -> XdrResult<CreateHow> {
    match r.u32("createmode3")? {
        0 => Ok(CreateHow::Unchecked(get_sattr(r)?)),
        1 => Ok(CreateHow::Guarded(get_sattr(r)?)),
        2 => {
            let v = r.opaque_fixed(8, "createverf3")?;
            let mut verf = [0u8; 8];
            verf.copy_from_slice(v);
            Ok(CreateHow::Exclusive(verf))
        }
        value => Err(crate::xdr::XdrError::BadValue {
            what: "createmode3",
            value,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::FileType;

    #[test]
    fn fattr3_has_its_rfc_size_and_sattr3_decodes() {
        let a = Attr {
            ftype: FileType::Regular,
            mode: 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            size: 5,
            used: 5,
            fileid: 9,
            atime: Time::default(),
            mtime: Time::default(),
            ctime: Time::default(),
        };
        let mut out = Vec::new();
        put_fattr(&mut out, &a);
        assert_eq!(out.len(), FATTR3_LEN);

        let mut b = Vec::new();
        b.put_bool(true);
        b.put_u32(0o600);
        b.put_bool(false);
        b.put_bool(false);
        b.put_bool(true);
        b.put_u64(1 << 40);
        b.put_u32(1);
        b.put_u32(2);
        b.put_u32(7);
        b.put_u32(8);
        let s = get_sattr(&mut XdrReader::new(&b)).unwrap();
        assert_eq!(s.mode, Some(0o600));
        assert_eq!(s.size, Some(1 << 40));
        assert_eq!(s.atime, SetTime::ServerTime);
        assert_eq!(s.mtime, SetTime::Client(Time { secs: 7, nsecs: 8 }));
        let n = b.len();
        b[n - 12..n - 8].copy_from_slice(&[0, 0, 0, 3]);
        assert!(get_sattr(&mut XdrReader::new(&b)).is_err());
    }
}
