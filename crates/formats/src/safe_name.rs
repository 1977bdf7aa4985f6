//! The one gate between a name a guest wrote and the host's filesystem:
//! [`safe_name`] decides whether a name can be used as a single path
//! component (a directory under the publish mount root, a FUSE file name,
//! the file `files get` creates) and refuses it otherwise.
//!
//! Guest-written names are LVM VG and LV names (they become `<vg>-<lv>`
//! volume names), partition names and GPT labels, filesystem labels and
//! file names read by the userspace filesystem readers. Every place that
//! joins such a name (or a name built from one) onto a host path checks it
//! here first; a refused volume becomes a [`VolumeProblem`] saying why and
//! everything else is still served.
//!
//! The rules (a name is used as it is or refused, never rewritten, so two
//! names can never be rewritten into the same one):
//!
//! | rule | why |
//! |---|---|
//! | not empty, not `.` or `..` | they name the directory itself or its parent |
//! | no `/` | a separator: the name would be several components (`../../etc`) |
//! | no NUL and no control character (C0, DEL, C1) | NUL ends a C path; newlines and escapes break line-based state (`/proc/mounts`, the publisher's report line) and terminals |
//! | no leading `-` | it reads as an option when a path reaches a tool's command line (LVM itself forbids it) |
//! | at most [`MAX_NAME_BYTES`] bytes of UTF-8 | Linux refuses longer components (`NAME_MAX`) |
//!
//! Anything else (spaces, quotes, non-ASCII letters, `\`) is an ordinary
//! byte to Linux and stays: mounts are `mount(2)` calls and tools are run
//! with argument vectors, never through a shell.

use crate::problem::VolumeProblem;
use std::fmt;

/// Longest name accepted, in bytes (Linux's `NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a name is not a safe path component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Empty,
    DotOrDotDot,
    Slash,
    Nul,
    Control,
    LeadingDash,
    TooLong,
}

impl NameRule {
    fn describe(self) -> &'static str {
        match self {
            NameRule::Empty => "it is empty",
            NameRule::DotOrDotDot => "it is `.` or `..`",
            NameRule::Slash => "it contains `/`",
            NameRule::Nul => "it contains a NUL byte",
            NameRule::Control => "it contains a control character",
            NameRule::LeadingDash => "it begins with `-`",
            NameRule::TooLong => "it is longer than 255 bytes",
        }
    }
}

/// A name refused by [`safe_name`]: the name (shown escaped) and the rule
/// it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafeName {
    pub name: String,
    pub rule: NameRule,
}

impl fmt::Display for UnsafeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "name {} is not a safe file name: {}",
            escaped(&self.name),
            self.rule.describe()
        )
    }
}

impl std::error::Error for UnsafeName {}

impl UnsafeName {
    /// The problem of a volume refused for its name: `what` names the
    /// volume's origin (`LVM VG "x" LV "y"`); its data is not served.
    pub fn problem(&self, what: &str) -> VolumeProblem {
        VolumeProblem::unserved(format!("{what}: refused, not served: {self}"))
    }
}

/// `name` when it is safe to use as one path component on the host, else
/// why not (see the module doc for the rules).
pub fn safe_name(name: &str) -> Result<&str, UnsafeName> {
    let rule = if name.is_empty() {
        Some(NameRule::Empty)
    } else if name == "." || name == ".." {
        Some(NameRule::DotOrDotDot)
    } else if name.contains('/') {
        Some(NameRule::Slash)
    } else if name.contains('\0') {
        Some(NameRule::Nul)
    } else if name.chars().any(char::is_control) {
        Some(NameRule::Control)
    } else if name.starts_with('-') {
        Some(NameRule::LeadingDash)
    } else if name.len() > MAX_NAME_BYTES {
        Some(NameRule::TooLong)
    } else {
        None
    };
    match rule {
        None => Ok(name),
        Some(rule) => Err(UnsafeName {
            name: name.to_string(),
            rule,
        }),
    }
}

/// `name` quoted, with control characters escaped (`"a\nb"`), for messages
/// that show a guest-written name.
pub fn escaped(name: &str) -> String {
    format!("{name:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass_unchanged() {
        for n in [
            "vg0-root",
            "disk0p1",
            "web01-disk0.raw",
            "my--vg-lv--1",
            ".hidden",
            "..x",
            "a b 'c'",
            "Données",
            "x\\y",
        ] {
            assert_eq!(safe_name(n), Ok(n));
        }
        assert!(safe_name(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn dangerous_names_are_refused_with_the_rule() {
        let cases = [
            ("", NameRule::Empty),
            (".", NameRule::DotOrDotDot),
            ("..", NameRule::DotOrDotDot),
            ("../../../escaped-root", NameRule::Slash),
            ("a/b", NameRule::Slash),
            ("/", NameRule::Slash),
            ("a\0b", NameRule::Nul),
            ("a\nb", NameRule::Control),
            ("a\u{1b}[31m", NameRule::Control),
            ("a\u{9b}b", NameRule::Control),
            ("\u{7f}", NameRule::Control),
            ("-rf", NameRule::LeadingDash),
        ];
        for (name, rule) in cases {
            assert_eq!(safe_name(name).unwrap_err().rule, rule, "{name:?}");
        }
        assert_eq!(
            safe_name(&"é".repeat(128)).unwrap_err().rule,
            NameRule::TooLong
        );
    }

    #[test]
    fn the_refusal_escapes_the_name_and_says_why() {
        let e = safe_name("a\n/b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "name \"a\\n/b\" is not a safe file name: it contains `/`"
        );
        let p = e.problem("LVM VG \"vg0\" LV \"a\\n/b\"");
        assert!(p.kind.leaves_data_unserved());
        assert!(p.message.contains("refused, not served"), "{p}");
        assert!(!p.message.contains('\n'));
    }
}
