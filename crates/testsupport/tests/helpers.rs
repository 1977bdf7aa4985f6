//! The helpers themselves: a missing tool fails with install advice, a
//! failing command fails with its stderr, zero blocks become holes,
//! patches and writes land where asked, error checks see the file name.

use lifeboat_testsupport::*;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

/// The panic message of `f`.
fn panic_text(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let err = std::panic::catch_unwind(f).expect_err("the helper must fail the test");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn a_missing_tool_fails_with_install_advice() {
    let text = panic_text(|| {
        require_tool("no-such-tool-lifeboat", "no-such-package");
    });
    assert!(
        text.contains("no-such-tool-lifeboat") && text.contains("apt-get install no-such-package"),
        "{text}"
    );
    assert!(find_tool("sh").is_some());
}

#[test]
fn a_failing_command_fails_with_its_command_line_and_stderr() {
    let text = panic_text(|| {
        run(Command::new("sh").args(["-c", "echo oops-on-stderr >&2; exit 3"]));
    });
    assert!(
        text.contains("oops-on-stderr") && text.contains("exit status: 3") && text.contains("sh"),
        "{text}"
    );
    assert_eq!(run_stdout(Command::new("echo").arg("hi")), "hi\n");
    let out = run_with_stdin(&mut Command::new("cat"), "piped");
    assert_eq!(out.stdout, b"piped");
    assert_eq!(output(&mut Command::new("false")).status.code(), Some(1));
}

#[test]
fn zero_blocks_are_written_as_holes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse.raw");
    let block = 1 << 20;
    let mut bytes = vec![0u8; 8 * block];
    bytes[3 * block..4 * block].fill(7);
    write_sparse(&path, &bytes, block);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let used = std::fs::metadata(&path).unwrap().blocks() * 512;
    assert!(used < 2 * block as u64, "{used} bytes allocated");
}

#[test]
fn writes_and_patches_land_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "f.bin", &[0u8; 16]);
    write_at(&path, 4, b"abcd");
    patch_file(&path, |b| b[0] = 9);
    let mut want = vec![0u8; 16];
    want[0] = 9;
    want[4..8].copy_from_slice(b"abcd");
    assert_eq!(std::fs::read(&path).unwrap(), want);
    sparse_file(&path, MIB);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), MIB);
    assert_eq!(path_str(&path), path.to_str().unwrap());
}

#[test]
fn error_checks_need_the_file_name_and_the_words() {
    let path = std::path::Path::new("/x/disk.img");
    assert_error_names(&"bad header in /x/disk.img", path, &["bad", "header"]);
    let text = panic_text(|| assert_error_names(&"bad header", path, &[]));
    assert!(text.contains("names no file"), "{text}");
    let text = panic_text(|| assert_error_names(&"bad in /x/disk.img", path, &["header"]));
    assert!(text.contains("does not say"), "{text}");
}
