//! The NFSv3 procedures other than the directory listings: argument
//! decoding, one backend call, result encoding (RFC 1813 section 3.3).

use super::codec::*;
use super::perm::{Caller, R, W, X};
use super::{NfsProgram, ProcResult, Who, DIR_PREF, MAX_IO};
use crate::backend::{Attr, CreateHow, FileType, NfsError, SetAttr, Stable, Status, MAX_NAME};
use crate::rpc::Reply;
use crate::xdr::{padded, XdrReader, XdrWrite};
use lifeboat_vdisk::SharedBytes;

const ACCESS_READ: u32 = 0x01;
const ACCESS_LOOKUP: u32 = 0x02;
const ACCESS_MODIFY: u32 = 0x04;
const ACCESS_EXTEND: u32 = 0x08;
const ACCESS_DELETE: u32 = 0x10;
const ACCESS_EXECUTE: u32 = 0x20;

/// FSINFO properties: FSF3_HOMOGENEOUS | FSF3_CANSETTIME.
const FSF3_PROPERTIES: u32 = 0x08 | 0x10;

fn ok(out: &mut Vec<u8>) {
    out.put_u32(Status::Ok as u32);
}

/// What ACCESS grants `caller` on an object with attributes `a`.
fn granted(a: &Attr, caller: &Caller) -> u32 {
    let (r, w, x) = (caller.may(a, R), caller.may(a, W), caller.may(a, X));
    let mut g = 0;
    match a.ftype {
        FileType::Directory => {
            if r {
                g |= ACCESS_READ;
            }
            if x {
                g |= ACCESS_LOOKUP;
            }
            if w && x {
                g |= ACCESS_MODIFY | ACCESS_EXTEND | ACCESS_DELETE;
            }
        }
        FileType::Regular => {
            if r {
                g |= ACCESS_READ;
            }
            if w {
                g |= ACCESS_MODIFY | ACCESS_EXTEND | ACCESS_DELETE;
            }
            if x {
                g |= ACCESS_EXECUTE;
            }
        }
    }
    g
}

fn stable_from(v: u32) -> Result<Stable, crate::xdr::XdrError> {
    match v {
        0 => Ok(Stable::Unstable),
        1 => Ok(Stable::DataSync),
        2 => Ok(Stable::FileSync),
        value => Err(crate::xdr::XdrError::BadValue {
            what: "stable_how",
            value,
        }),
    }
}

impl NfsProgram {
    pub(super) fn getattr(&self, r: &mut XdrReader, out: &mut Vec<u8>) -> ProcResult {
        let fh = get_fh(r)?;
        let a = self.backend.getattr(fh)?;
        ok(out);
        put_fattr(out, &a);
        Ok(())
    }

    pub(super) fn setattr(&self, r: &mut XdrReader, out: &mut Vec<u8>, who: &Who) -> ProcResult {
        let fh = get_fh(r)?;
        let set = get_sattr(r)?;
        let guard = get_guard(r)?;
        let now = self.backend.getattr(fh)?;
        if guard.is_some_and(|ctime| now.ctime != ctime) {
            return Err(NfsError::new(Status::NotSync, "SETATTR guard: ctime changed").into());
        }
        who.caller.check_setattr(&now, &set)?;
        let a = self.backend.setattr(fh, &set)?;
        ok(out);
        put_wcc(out, Some(&a));
        Ok(())
    }

    pub(super) fn lookup(&self, r: &mut XdrReader, out: &mut Vec<u8>, who: &Who) -> ProcResult {
        let peer = who.peer;
        let (dir, name) = get_dirop(r)?;
        if !who.caller.is_root() {
            let d = self.backend.getattr(dir)?;
            if d.ftype == FileType::Directory {
                who.caller.need(&d, X, "search this folder")?;
            }
        }
        let (fh, a) = self.backend.lookup(dir, name)?;
        if !self.backend.permits(peer, &fh) {
            return Err(self.refused(peer).into());
        }
        let d = self.backend.getattr(dir).ok();
        ok(out);
        out.put_opaque(&fh);
        put_post_attr(out, Some(&a));
        put_post_attr(out, d.as_ref());
        Ok(())
    }

    pub(super) fn access(&self, r: &mut XdrReader, out: &mut Vec<u8>, who: &Who) -> ProcResult {
        let fh = get_fh(r)?;
        let want = r.u32("access")?;
        let a = self.backend.getattr(fh)?;
        ok(out);
        put_post_attr(out, Some(&a));
        out.put_u32(want & granted(&a, &who.caller));
        Ok(())
    }

    pub(super) fn read(&self, r: &mut XdrReader, out: &mut Reply, who: &Who) -> ProcResult {
        let fh = get_fh(r)?;
        let offset = r.u64("offset3")?;
        let count = r.u32("count3")?.min(MAX_IO) as usize;
        let a = self.backend.getattr(fh)?;
        if a.ftype == FileType::Directory {
            return Err(NfsError::new(Status::IsDir, "READ of a directory").into());
        }
        who.caller.need(&a, R, "read this file")?;
        ok(out);
        put_post_attr(out, Some(&a));
        let fields = out.len();
        out.extend_from_slice(&[0; 12]); // count, eof, data length
                                         // The data goes out as views of the cache's blocks, not copied.
        let (parts, eof) = self.backend.read_shared(fh, offset, count)?;
        let mut n = 0;
        for p in parts {
            let take = p.len().min(count - n);
            if take < p.len() {
                // A backend returning more than asked: send what was asked.
                let mut v = p.to_vec();
                v.truncate(take);
                out.splice(SharedBytes::owned(v));
            } else {
                out.splice(p);
            }
            n += take;
        }
        let end = out.len() + padded(n) - n;
        out.resize(end, 0);
        out[fields..fields + 4].copy_from_slice(&(n as u32).to_be_bytes());
        out[fields + 4..fields + 8].copy_from_slice(&(eof as u32).to_be_bytes());
        out[fields + 8..fields + 12].copy_from_slice(&(n as u32).to_be_bytes());
        Ok(())
    }

    pub(super) fn write(&self, r: &mut XdrReader, out: &mut Vec<u8>, who: &Who) -> ProcResult {
        let fh = get_fh(r)?;
        let offset = r.u64("offset3")?;
        let count = r.u32("count3")? as usize;
        let stable = stable_from(r.u32("stable_how")?)?;
        let data = r.opaque(MAX_IO, "write data")?;
        let data = &data[..count.min(data.len())];
        self.need_on(fh, who, W, "write this file")?;
        let (committed, a) = self.backend.write(fh, offset, data, stable)?;
        ok(out);
        put_wcc(out, Some(&a));
        out.put_u32(data.len() as u32);
        out.put_u32(committed as u32);
        out.put_opaque_fixed(&self.verifier);
        Ok(())
    }

    pub(super) fn commit(&self, r: &mut XdrReader, out: &mut Vec<u8>, who: &Who) -> ProcResult {
        let fh = get_fh(r)?;
        let _offset = r.u64("offset3")?;
        let _count = r.u32("count3")?;
        self.need_on(fh, who, W, "commit writes to this file")?;
        let a = self.backend.commit(fh)?;
        ok(out);
        put_wcc(out, Some(&a));
        out.put_opaque_fixed(&self.verifier);
        Ok(())
    }

    /// NFS3ERR_ACCES unless `who` has `want` on `fh` (root: no look-up).
    fn need_on(&self, fh: &[u8], who: &Who, want: u32, what: &str) -> ProcResult {
        if !who.caller.is_root() {
            let a = self.backend.getattr(fh)?;
            who.caller.need(&a, want, what)?;
        }
        Ok(())
    }

    /// A new entry in folder `dir`: needs write and search on it.
    fn need_dir(&self, dir: &[u8], who: &Who) -> ProcResult {
        self.need_on(dir, who, W | X, "change entries of this folder")
    }

    /// Gives a new object to its non-root creator (`owner` from
    /// [`Caller::ownership`]); returns its attributes after.
    fn give(&self, fh: &[u8], a: Attr, owner: Option<SetAttr>) -> Result<Attr, NfsError> {
        match owner {
            Some(set) => self.backend.setattr(fh, &set),
            None => Ok(a),
        }
    }

    fn created(&self, dir: &[u8], fh: &[u8], a: &Attr, out: &mut Vec<u8>) {
        let d = self.backend.getattr(dir).ok();
        ok(out);
        put_post_fh(out, fh);
        put_post_attr(out, Some(a));
        put_wcc(out, d.as_ref());
    }

    pub(super) fn create(&self, r: &mut XdrReader, out: &mut Vec<u8>, who: &Who) -> ProcResult {
        let (dir, name) = get_dirop(r)?;
        let how = get_createhow(r)?;
        self.need_dir(dir, who)?;
        let asked = match &how {
            CreateHow::Unchecked(set) | CreateHow::Guarded(set) => *set,
            CreateHow::Exclusive(_) => SetAttr::default(),
        };
        if let (CreateHow::Unchecked(set), false) = (&how, who.caller.is_root()) {
            // UNCHECKED over an existing object sets its attributes: the
            // same rules as SETATTR.
            if let Ok((_, a)) = self.backend.lookup(dir, name) {
                who.caller.check_setattr(&a, set)?;
            }
        }
        let owner = who.caller.ownership(&asked)?;
        let (fh, a) = self.backend.create(dir, name, &how)?;
        let a = self.give(&fh, a, owner)?;
        self.created(dir, &fh, &a, out);
        Ok(())
    }

    pub(super) fn mkdir(&self, r: &mut XdrReader, out: &mut Vec<u8>, who: &Who) -> ProcResult {
        let (dir, name) = get_dirop(r)?;
        let set = get_sattr(r)?;
        self.need_dir(dir, who)?;
        let owner = who.caller.ownership(&set)?;
        let (fh, a) = self.backend.mkdir(dir, name, &set)?;
        let a = self.give(&fh, a, owner)?;
        self.created(dir, &fh, &a, out);
        Ok(())
    }

    pub(super) fn remove(
        &self,
        r: &mut XdrReader,
        out: &mut Vec<u8>,
        dir_: bool,
        who: &Who,
    ) -> ProcResult {
        let (dir, name) = get_dirop(r)?;
        self.need_dir(dir, who)?;
        if dir_ {
            self.backend.rmdir(dir, name)?;
        } else {
            self.backend.remove(dir, name)?;
        }
        let d = self.backend.getattr(dir).ok();
        ok(out);
        put_wcc(out, d.as_ref());
        Ok(())
    }

    pub(super) fn rename(&self, r: &mut XdrReader, out: &mut Vec<u8>, who: &Who) -> ProcResult {
        let (from_dir, from) = get_dirop(r)?;
        let (to_dir, to) = get_dirop(r)?;
        self.need_dir(from_dir, who)?;
        self.need_dir(to_dir, who)?;
        self.backend.rename(from_dir, from, to_dir, to)?;
        let f = self.backend.getattr(from_dir).ok();
        let t = self.backend.getattr(to_dir).ok();
        ok(out);
        put_wcc(out, f.as_ref());
        put_wcc(out, t.as_ref());
        Ok(())
    }

    pub(super) fn fsstat(&self, r: &mut XdrReader, out: &mut Vec<u8>) -> ProcResult {
        let fh = get_fh(r)?;
        let a = self.backend.getattr(fh)?;
        let s = self.backend.fsstat(fh)?;
        ok(out);
        put_post_attr(out, Some(&a));
        for v in [
            s.total_bytes,
            s.free_bytes,
            s.avail_bytes,
            s.total_files,
            s.free_files,
            s.avail_files,
        ] {
            out.put_u64(v);
        }
        out.put_u32(0); // invarsec: may change at any time
        Ok(())
    }

    pub(super) fn fsinfo(&self, r: &mut XdrReader, out: &mut Vec<u8>) -> ProcResult {
        let fh = get_fh(r)?;
        let a = self.backend.getattr(fh)?;
        ok(out);
        put_post_attr(out, Some(&a));
        out.put_u32(MAX_IO); // rtmax
        out.put_u32(MAX_IO); // rtpref
        out.put_u32(4096); // rtmult
        out.put_u32(MAX_IO); // wtmax
        out.put_u32(MAX_IO); // wtpref
        out.put_u32(4096); // wtmult
        out.put_u32(DIR_PREF); // dtpref
        out.put_u64(i64::MAX as u64); // maxfilesize
        put_time(out, crate::backend::Time { secs: 0, nsecs: 1 }); // time_delta
        out.put_u32(FSF3_PROPERTIES);
        Ok(())
    }

    pub(super) fn pathconf(&self, r: &mut XdrReader, out: &mut Vec<u8>) -> ProcResult {
        let fh = get_fh(r)?;
        let a = self.backend.getattr(fh)?;
        ok(out);
        put_post_attr(out, Some(&a));
        out.put_u32(1); // linkmax
        out.put_u32(MAX_NAME);
        out.put_bool(true); // no_trunc
        out.put_bool(true); // chown_restricted
        out.put_bool(false); // case_insensitive
        out.put_bool(true); // case_preserving
        Ok(())
    }
}
