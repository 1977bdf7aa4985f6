//! What a job backs up, from its source list: image files
//! (`NAME=[FORMAT:]PATH`, as `lifeboat backup` takes them, parsed by
//! [`DiskSpec::parse`]) or one running VM (`qmp:/path/to.sock`). The API
//! checks a list with [`parse_sources`] before it stores it; the runner
//! parses the stored list again when it runs.
//!
//! Where sources may be: a server or proxy reads host paths only under
//! the folders its operator named ([`SourceRoots`], `--source-root`), so
//! an operator token is not a way to read `/etc/shadow` or to speak QMP to
//! any socket of the host. The API checks a path lexically when a job is
//! created (no `..`, under a root); the run resolves every symlink
//! ([`SourceRoots::resolve`]) and opens the resolved path only when it is
//! still under a root.

use lifeboat_engine::DiskSpec;
use std::path::{Component, Path, PathBuf};

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

/// The host folders whose files and sockets jobs may read: each as given
/// and with its symlinks resolved. Empty: no host path is a source.
#[derive(Debug, Clone)]
pub struct SourceRoots {
    roots: Vec<(PathBuf, PathBuf)>,
    /// The command whose `--source-root` sets them, for the error.
    command: &'static str,
}

impl SourceRoots {
    /// Checks and resolves the folders `dirs` of `command` (`lifeboat
    /// serve`, `lifeboat proxy`): each must be an absolute path of an
    /// existing directory other than `/`.
    pub fn new(command: &'static str, dirs: &[PathBuf]) -> Result<SourceRoots, String> {
        let mut roots = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let say = |why: &str| format!("--source-root {}: {why}", dir.display());
            if !dir.is_absolute() {
                return Err(say("must be an absolute path"));
            }
            let real = dir
                .canonicalize()
                .map_err(|e| say(&format!("cannot be resolved: {e}")))?;
            if !real.is_dir() {
                return Err(say("is not a directory"));
            }
            if real.parent().is_none() {
                return Err(say(
                    "is the root of the file system: name the folders that hold VM images and QMP sockets",
                ));
            }
            roots.push((dir.clone(), real));
        }
        Ok(SourceRoots { roots, command })
    }

    /// No folder at all: jobs of this host can read no source.
    pub fn none(command: &'static str) -> SourceRoots {
        SourceRoots {
            roots: Vec::new(),
            command,
        }
    }

    fn refuse(&self, path: &Path) -> String {
        if self.roots.is_empty() {
            return format!(
                "{} is not under a source root: `{}` was started without --source-root, so its jobs read no host path (give --source-root DIR for the folders that hold VM images and QMP sockets)",
                path.display(),
                self.command
            );
        }
        let list: Vec<String> = self
            .roots
            .iter()
            .map(|(given, _)| given.display().to_string())
            .collect();
        format!(
            "{} is not under a source root of `{}` ({})",
            path.display(),
            self.command,
            list.join(", ")
        )
    }

    /// The check of a job's path before it is stored: absolute, no `..`,
    /// under a root as given or resolved. Symlinks are the run's to
    /// resolve ([`SourceRoots::resolve`]).
    pub fn check(&self, path: &Path) -> Result<(), String> {
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(format!(
                "{}: a source path may not contain '..'",
                path.display()
            ));
        }
        if self
            .roots
            .iter()
            .any(|(given, real)| path.starts_with(given) || path.starts_with(real))
        {
            Ok(())
        } else {
            Err(self.refuse(path))
        }
    }

    /// The path a run opens: `path` with every symlink resolved, when that
    /// is under a resolved root; else the refusal naming both.
    pub fn resolve(&self, path: &Path) -> Result<PathBuf, String> {
        self.check(path)?;
        let real = path
            .canonicalize()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if self.roots.iter().any(|(_, root)| real.starts_with(root)) {
            Ok(real)
        } else {
            Err(format!(
                "{} resolves to {}: {}",
                path.display(),
                real.display(),
                self.refuse(&real)
            ))
        }
    }
}

/// Parses and checks a source list; the error says which source is wrong
/// and why. `roots`: the folders of the host that runs the job, when that
/// host is this one (a proxy checks its own when it runs the job).
pub fn parse_sources(sources: &[String], roots: Option<&SourceRoots>) -> Result<JobSource, String> {
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
        if let Some(roots) = roots {
            roots
                .check(&path)
                .map_err(|e| format!("source qmp:{socket}: {e}"))?;
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
        if let Some(roots) = roots {
            roots
                .check(&d.path)
                .map_err(|e| format!("source {spec:?}: {e}"))?;
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
        parse_sources(
            &list.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            None,
        )
    }

    #[test]
    fn sources_outside_the_roots_are_refused_and_symlinks_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir(&images).unwrap();
        std::fs::write(images.join("a.raw"), b"disk").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", images.join("escape.raw")).unwrap();
        let roots = SourceRoots::new("lifeboat serve", std::slice::from_ref(&images)).unwrap();
        let list = |s: &str| vec![s.to_string()];

        let inside = format!("disk0={}", images.join("a.raw").display());
        assert!(parse_sources(&list(&inside), Some(&roots)).is_ok());
        for (source, says) in [
            ("disk0=/etc/shadow".to_string(), "not under a source root"),
            ("qmp:/run/other.sock".to_string(), "not under a source root"),
            (
                format!("disk0={}/../../etc/shadow", images.display()),
                "'..'",
            ),
        ] {
            let e = parse_sources(&list(&source), Some(&roots)).unwrap_err();
            assert!(e.contains(says), "{source}: {e}");
        }
        // Lexically inside, really outside: refused when the run resolves it.
        let link = images.join("escape.raw");
        assert!(roots.check(&link).is_ok());
        let e = roots.resolve(&link).unwrap_err();
        assert!(e.contains("/etc/passwd"), "{e}");
        assert_eq!(
            roots.resolve(&images.join("a.raw")).unwrap(),
            images.canonicalize().unwrap().join("a.raw")
        );

        let none = SourceRoots::none("lifeboat proxy");
        let e = none.resolve(&images.join("a.raw")).unwrap_err();
        assert!(e.contains("without --source-root"), "{e}");
        for bad in ["/", "relative"] {
            assert!(SourceRoots::new("lifeboat serve", &[PathBuf::from(bad)]).is_err());
        }
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
