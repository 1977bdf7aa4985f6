//! A stand-alone publisher process: `lifeboat-publishd <request-json>`,
//! the same as `lifeboat publish-daemon <request-json>`. The crate's tests
//! use it as the daemon command (they cannot run the CLI binary).

use lifeboat_publish::{run_daemon, DaemonRequest};

fn main() {
    let Some(json) = std::env::args().nth(1) else {
        eprintln!("usage: lifeboat-publishd <request-json>");
        std::process::exit(2);
    };
    let req: DaemonRequest = match serde_json::from_str(&json) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lifeboat-publishd: bad request: {e}");
            std::process::exit(2);
        }
    };
    let mut out = std::io::stdout();
    if let Err(e) = run_daemon(&req, &mut std::io::stdin().lock(), &mut out) {
        eprintln!("lifeboat-publishd: {e}");
        std::process::exit(1);
    }
}
