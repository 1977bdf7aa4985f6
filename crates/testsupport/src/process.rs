//! Running commands in tests: with or without requiring success, with
//! input on stdin, QEMU's image tools (the format oracles), and re-running
//! one ignored test of the current binary inside a small tmpfs (how the
//! tests fill a disk without filling the machine's).

use crate::tools::tool;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `cmd` whatever its exit status; panics only when it cannot start.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Panics with the command line, exit status, stdout and stderr unless
/// `out` is a success.
fn check(cmd: &Command, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` and fails the test (with its command line and stderr)
/// unless it exits 0; returns its output.
pub fn run(cmd: &mut Command) -> Output {
    let out = output(cmd);
    check(cmd, out)
}

/// [`run`], returning stdout as text.
pub fn run_stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// [`run`] with `input` written to the command's stdin.
pub fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("writing the stdin of {cmd:?}: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}"));
    check(cmd, out)
}

/// Runs `qemu-img args...` (install advice when missing); must succeed.
pub fn qemu_img(args: &[&str]) -> Output {
    run(tool("qemu-img", "qemu-utils").args(args))
}

/// Converts the raw image `src` into a `format` image at `dst` with
/// `qemu-img convert -f raw -O format options... src dst` (options such as
/// `["-o", "subformat=dynamic"]` or `["-c"]`); must succeed.
pub fn qemu_img_from_raw(src: &Path, dst: &Path, format: &str, options: &[&str]) -> Output {
    run(tool("qemu-img", "qemu-utils")
        .args(["convert", "-f", "raw", "-O", format])
        .args(options)
        .arg(src)
        .arg(dst))
}

/// Runs `qemu-io args...` (install advice when missing); must succeed.
pub fn qemu_io(args: &[&str]) -> Output {
    run(tool("qemu-io", "qemu-utils").args(args))
}

/// Runs the ignored test `test` (its full path, e.g.
/// `overlay::tests::enospc_in_a_small_tmpfs`) of the current test binary
/// inside a private user and mount namespace (`unshare -Urm`) where a
/// tmpfs of `size` (e.g. "512k") is mounted on `mount_point`, with `env`
/// set; fails unless that test passed. Returns its stdout and stderr.
pub fn run_ignored_in_tmpfs(
    test: &str,
    mount_point: &Path,
    size: &str,
    env: (&str, &Path),
) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let script = format!(
        "mount -t tmpfs -o size={size} lifeboat-test '{}' && exec '{}' --ignored --exact \
         {test} --nocapture",
        mount_point.display(),
        exe.display()
    );
    let out = tool("unshare", "util-linux")
        .args(["-Urm", "sh", "-c", &script])
        .env(env.0, env.1)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run unshare ({e}): install util-linux (apt-get install util-linux)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{test} needs `unshare -Urm` and a tmpfs mount (enable user namespaces: \
         sysctl kernel.unprivileged_userns_clone=1); output:\n{text}"
    );
    text
}
