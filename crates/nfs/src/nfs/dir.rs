//! READDIR and READDIRPLUS: pages of the backend's whole listing.
//!
//! Cookies are positions in the listing: the cookie of entry `i` is `i + 1`,
//! and a call with cookie `c` resumes at entry `c` (0 starts over). The
//! cookie verifier is the listing's verifier (it changes when the directory
//! changes); a call with a non-zero cookie and another verifier gets
//! NFS3ERR_BAD_COOKIE, as does a cookie past the end. Entries are added
//! while the encoded reply stays within the client's `count` (READDIR) or
//! `dircount`/`maxcount` (READDIRPLUS); if not even one fits,
//! NFS3ERR_TOOSMALL. Entries the client may not use
//! ([`crate::NfsBackend::permits`]) are dropped before paging, so one
//! client always pages the same filtered listing.

use super::codec::*;
use super::perm::R;
use super::{NfsProgram, ProcResult, Who};
use crate::backend::{NfsError, Status};
use crate::xdr::{padded, XdrReader, XdrWrite};

/// Bytes of a reply around the entries: status, post_op_attr, verifier,
/// end of list, eof.
const OVERHEAD: usize = 4 + 4 + FATTR3_LEN + 8 + 4 + 4;

impl NfsProgram {
    /// READDIR (`plus` false) or READDIRPLUS for `who`.
    pub(super) fn list(
        &self,
        r: &mut XdrReader,
        out: &mut Vec<u8>,
        plus: bool,
        who: &Who,
    ) -> ProcResult {
        let peer = who.peer;
        let fh = get_fh(r)?;
        let cookie = r.u64("cookie3")?;
        let verf = r.opaque_fixed(8, "cookieverf3")?;
        let (dircount, maxcount) = if plus {
            let d = r.u32("dircount3")? as usize;
            (d, r.u32("maxcount3")? as usize)
        } else {
            let c = r.u32("count3")? as usize;
            (usize::MAX, c)
        };
        let dir = self.backend.getattr(fh)?;
        who.caller.need(&dir, R, "list this folder")?;
        let mut listing = self.backend.readdir(fh)?;
        listing
            .entries
            .retain(|e| self.backend.permits(peer, &e.handle));
        let verifier = listing.verifier.to_be_bytes();
        if cookie != 0 && verf != verifier {
            return Err(NfsError::new(Status::BadCookie, "cookie verifier changed").into());
        }
        let start = usize::try_from(cookie).unwrap_or(usize::MAX);
        if start > listing.entries.len() {
            return Err(NfsError::new(Status::BadCookie, format!("cookie {cookie}")).into());
        }
        out.put_u32(Status::Ok as u32);
        put_post_attr(out, Some(&dir));
        out.put_opaque_fixed(&verifier);
        let mut size = OVERHEAD;
        let mut dirsize = 0usize;
        let mut next = start;
        for (i, e) in listing.entries.iter().enumerate().skip(start) {
            let base = 4 + 8 + 4 + padded(e.name.len()) + 8;
            let extra = if plus {
                4 + FATTR3_LEN + 4 + 4 + padded(e.handle.len())
            } else {
                0
            };
            if size + base + extra > maxcount || dirsize + base > dircount {
                break;
            }
            size += base + extra;
            dirsize += base;
            out.put_bool(true);
            out.put_u64(e.attr.fileid);
            out.put_string(&e.name);
            out.put_u64(i as u64 + 1);
            if plus {
                put_post_attr(out, Some(&e.attr));
                put_post_fh(out, &e.handle);
            }
            next = i + 1;
        }
        if next == start && start < listing.entries.len() {
            return Err(NfsError::new(Status::TooSmall, format!("{maxcount} bytes")).into());
        }
        out.put_bool(false);
        out.put_bool(next == listing.entries.len());
        Ok(())
    }
}
