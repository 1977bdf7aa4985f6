//! Printing: JSON for scripts, aligned text for people.

use serde::Serialize;

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Logs of the long-running roles (`serve`, `proxy`, `agent`): JSON
/// lines on stderr through `tracing`, info and above.
pub fn install_json_logs() {
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
}

/// Bytes in binary units: `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Throughput: `850.2 MiB/s`.
pub fn rate(n: u64, secs: f64) -> String {
    if secs <= 0.0 {
        return "-".into();
    }
    format!("{}/s", bytes((n as f64 / secs) as u64))
}

/// An error and its causes on one line, `outer: inner: ...`. The library
/// errors put their source in their own message as well as in `source()`,
/// so a cause whose text the level above already holds is left out (else
/// `{:#}` prints "No space left on device" two or three times).
pub fn error_message(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut above = String::new();
    for cause in err.chain() {
        let msg = cause.to_string();
        if above.is_empty() || !above.contains(&msg) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&msg);
        }
        above = msg;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(8 << 30), "8.0 GiB");
    }

    /// Like the library errors: the source in the message and in `source()`.
    #[derive(Debug)]
    struct Io {
        source: std::io::Error,
    }

    impl std::fmt::Display for Io {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "I/O error on /r/x: {}", self.source)
        }
    }

    impl std::error::Error for Io {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn error_message_names_each_cause_once() {
        let io = std::io::Error::from_raw_os_error(28);
        let err = anyhow::Error::new(Io { source: io }).context("backup of vm");
        let msg = error_message(&err);
        assert!(
            msg.starts_with("backup of vm: I/O error on /r/x: "),
            "{msg}"
        );
        assert_eq!(msg.matches("os error 28").count(), 1, "{msg}");
        // Causes that do not repeat each other are all kept.
        let err = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(error_message(&err), "outer: middle: inner");
    }
}
