//! What a job backs up, from its source list: image files
//! (`NAME=[FORMAT:]PATH`, as `lifeboat backup` takes them, parsed by
//! [`DiskSpec::parse`]) or one running VM (`qmp:/path/to.sock`). The API
//! checks a list with [`parse_sources`] before it stores it; the runner
//! parses the stored list again when it runs.

use lifeboat_engine::DiskSpec;
use std::path::PathBuf;

/// The most sources a job takes.
pub const MAX_SOURCES: usize = 64;

/// A job's parsed sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSource {
    /// Image files, one per disk.
    Images(Vec<DiskSpec>),
    /// Every disk of a running VM, through its QMP socket.
    Live(PathBuf),
}

/// Parses and checks a source list; the error says which source is wrong
/// and why.
pub fn parse_sources(sources: &[String]) -> Result<JobSource, String> {
    if sources.is_empty() {
        return Err(
            "a job needs at least one source: NAME=[FORMAT:]PATH or qmp:/path/to.sock".into(),
        );
    }
    if sources.len() > MAX_SOURCES {
        return Err(format!("a job takes at most {MAX_SOURCES} sources"));
    }
    if let Some(socket) = sources.iter().find_map(|s| s.strip_prefix("qmp:")) {
        if sources.len() != 1 {
            return Err(format!(
                "source qmp:{socket} backs up every disk of the VM: give it alone, without NAME=PATH disks"
            ));
        }
        let path = PathBuf::from(socket);
        if !path.is_absolute() {
            return Err(format!(
                "source qmp:{socket}: the socket path must be absolute"
            ));
        }
        return Ok(JobSource::Live(path));
    }
    let mut disks: Vec<DiskSpec> = Vec::new();
    for spec in sources {
        let d = DiskSpec::parse(spec, None).map_err(|e| e.to_string())?;
        lifeboat_repo::check_name(&d.name).map_err(|e| format!("source {spec:?}: {e}"))?;
        if !d.path.is_absolute() {
            return Err(format!(
                "source {spec:?}: the path must be absolute (the server does not run in your directory)"
            ));
        }
        if disks.iter().any(|o| o.name == d.name) {
            return Err(format!("source {spec:?}: disk {:?} is named twice", d.name));
        }
        disks.push(d);
    }
    Ok(JobSource::Images(disks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<JobSource, String> {
        parse_sources(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn image_files_and_one_live_socket() {
        let JobSource::Images(d) = parse(&["disk0=/vms/a.raw", "disk1=qcow2:/vms/b"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].path, PathBuf::from("/vms/b"));
        assert_eq!(
            parse(&["qmp:/run/web01.qmp"]).unwrap(),
            JobSource::Live(PathBuf::from("/run/web01.qmp"))
        );
    }

    #[test]
    fn malformed_lists_are_refused_with_the_reason() {
        for (list, says) in [
            (&[][..], "at least one source"),
            (&["/vms/a.raw"][..], "NAME=[FORMAT:]PATH"),
            (&["disk0=relative.raw"][..], "absolute"),
            (&["disk0=/a", "disk0=/b"][..], "named twice"),
            (&["../x=/a"][..], "../x"),
            (&["qmp:/s", "disk0=/a"][..], "alone"),
            (&["qmp:rel.sock"][..], "absolute"),
        ] {
            let e = parse(list).unwrap_err();
            assert!(e.contains(says), "{list:?}: {e}");
        }
    }
}
