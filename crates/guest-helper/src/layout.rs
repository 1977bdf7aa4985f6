//! The helper's directory in the guest, as the proxy lays it out and the
//! helper reads it, and the defaults both sides share.

use std::time::Duration;

/// The TCP port the helper listens on in the guest by default.
pub const DEFAULT_PORT: u16 = 3542;

/// The helper's file name (in its directory, and beside `lifeboat`).
pub const HELPER_BIN: &str = "lifeboat-guest-helper";

/// Every helper directory's name starts with this; the helper refuses to
/// run from (and so to remove) any other directory.
pub const DIR_PREFIX: &str = "lifeboat-helper-";

/// The helper's certificate (DER).
pub const HELPER_CERT: &str = "helper-cert.der";

/// The helper's private key (PKCS#8 DER).
pub const HELPER_KEY: &str = "helper-key.der";

/// The proxy's certificate, the only client certificate accepted (DER).
pub const PROXY_CERT: &str = "proxy-cert.der";

/// The name both certificates carry and the proxy asks for (nothing
/// checks it: the pin is the certificate itself).
pub const TLS_NAME: &str = "lifeboat-guest-helper";

/// How long the helper waits for a connection, and for each request of
/// its session, before it exits on its own.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a TLS handshake may take before the helper drops the client.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// The pre-freeze script (copied from the user's file, made 0700 by the helper).
pub const PRE_FREEZE: &str = "pre-freeze";

/// The post-thaw script.
pub const POST_THAW: &str = "post-thaw";
