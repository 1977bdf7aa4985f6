//! The client allow list: which addresses may mount and use file handles.
//!
//! Entries are single addresses (`10.0.0.5`) or CIDR networks
//! (`10.0.0.0/24`, `fd00::/8`). IPv4-mapped IPv6 peers (`::ffff:10.0.0.5`,
//! as seen on a dual-stack socket) are compared as IPv4. An empty list
//! allows nobody: access is opt-in.

use std::net::IpAddr;
use std::str::FromStr;

/// A bad allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allow-list entry {entry:?}: {reason}")]
pub struct AllowParseError {
    pub entry: String,
    pub reason: &'static str,
}

/// One address or network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowEntry {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for AllowEntry {
    type Err = AllowParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| AllowParseError {
            entry: s.to_owned(),
            reason,
        };
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = normalize(a.trim().parse().map_err(|_| err("not an IP address"))?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .map_err(|_| err("bad prefix length"))?,
            None => max,
        };
        if prefix > max {
            return Err(err("prefix length too long for the address"));
        }
        Ok(AllowEntry { addr, prefix })
    }
}

fn normalize(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(a),
        v4 => v4,
    }
}

fn bits(a: IpAddr) -> (u128, u32) {
    match a {
        IpAddr::V4(v4) => (u32::from(v4) as u128, 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

impl std::fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl AllowEntry {
    /// Whether `peer` is inside this entry.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = normalize(peer);
        if peer.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let ((a, width), (p, _)) = (bits(self.addr), bits(peer));
        let shift = width - self.prefix as u32;
        if shift >= 128 {
            return true;
        }
        (a >> shift) == (p >> shift)
    }
}

/// The addresses allowed to use the service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<AllowEntry>,
}

impl AllowList {
    /// Parses entries such as `10.0.0.5` or `10.0.0.0/24`.
    pub fn parse<S: AsRef<str>>(
        entries: impl IntoIterator<Item = S>,
    ) -> Result<Self, AllowParseError> {
        let entries = entries
            .into_iter()
            .map(|e| e.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(AllowList { entries })
    }

    /// The entries, for EXPORT's group list.
    pub fn entries(&self) -> &[AllowEntry] {
        &self.entries
    }

    /// Whether `peer` may mount and use handles.
    pub fn allows(&self, peer: IpAddr) -> bool {
        self.entries.iter().any(|e| e.contains(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_networks_match() {
        let l = AllowList::parse(["10.0.0.5", "192.168.1.0/24", "fd00::/8", "0.0.0.0/0"]).unwrap();
        assert!(l.allows("10.0.0.5".parse().unwrap()));
        assert!(l.allows("::ffff:192.168.1.9".parse().unwrap()));
        assert!(l.allows("fd12::1".parse().unwrap()));
        let l = AllowList::parse(["10.0.0.5", "192.168.1.0/24"]).unwrap();
        assert!(!l.allows("10.0.0.6".parse().unwrap()));
        assert!(!l.allows("192.168.2.1".parse().unwrap()));
        assert!(!AllowList::default().allows("127.0.0.1".parse().unwrap()));
        assert!(AllowList::parse(["10.0.0.0/33"]).is_err());
        assert!(AllowList::parse(["host"]).is_err());
    }
}
