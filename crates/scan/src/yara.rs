//! YARA scanning of file contents in memory with the `yara-x` crate (cargo
//! feature `yara`). Without the feature, [`YaraScanner::from_rules`] returns
//! [`ScanError::NotBuilt`].
//!
//! Rules are compiled once; [`YaraScanner::session`] makes a reusable
//! scanner (creating one per file costs a WASM store). The fingerprint used
//! by the scan cache is BLAKE3 of the rule source text.

use crate::error::{Result, ScanError};

/// The rules shipped with Lifeboat (`rules/builtin.yar`): EICAR and the test
/// marker `LIFEBOAT-TEST-MARKER-7f3a`.
pub const BUILTIN_RULES: &str = include_str!("../rules/builtin.yar");

/// Compiled YARA rules.
pub struct YaraScanner {
    /// The rule files, e.g. `builtin.yar + /etc/rules.yar`.
    name: String,
    fingerprint: String,
    /// Longest match when the rule set is local (see [`crate::locality`]).
    local_match: Option<u64>,
    #[cfg(feature = "yara")]
    rules: yara_x::Rules,
}

impl std::fmt::Debug for YaraScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YaraScanner")
            .field("name", &self.name)
            .field("fingerprint", &self.fingerprint)
            .field("local_match", &self.local_match)
            .finish()
    }
}

impl YaraScanner {
    /// Compiles the built-in rules.
    pub fn builtin() -> Result<Self> {
        Self::from_rules_named("builtin.yar", BUILTIN_RULES)
    }

    /// Compiles rules from source text.
    pub fn from_rules(text: &str) -> Result<Self> {
        Self::from_rules_named("<rules>", text)
    }

    /// Compiles rules from source text; `name` appears in errors.
    pub fn from_rules_named(name: &str, text: &str) -> Result<Self> {
        let fingerprint = format!("yara-x:{}", blake3::hash(text.as_bytes()).to_hex());
        #[cfg(feature = "yara")]
        {
            let rules = yara_x::compile(text).map_err(|e| ScanError::YaraCompile {
                name: name.to_string(),
                message: e.to_string(),
            })?;
            Ok(YaraScanner {
                name: name.to_string(),
                fingerprint,
                local_match: crate::locality::local_match_len(text),
                rules,
            })
        }
        #[cfg(not(feature = "yara"))]
        {
            let _ = (name, fingerprint);
            Err(ScanError::NotBuilt {
                what: "YARA scanning".to_string(),
                feature: "yara".to_string(),
            })
        }
    }

    /// The name the rules were compiled under (their files).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The engine and its version, e.g. `yara-x 1.22.1`.
    pub fn engine_version() -> String {
        #[cfg(feature = "yara")]
        {
            format!("yara-x {}", yara_x::VERSION)
        }
        #[cfg(not(feature = "yara"))]
        {
            "yara-x (not built in)".to_string()
        }
    }

    /// Fingerprint of the rule set (BLAKE3 of the rule text), for cache
    /// keys and verdicts.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The longest possible match when the rule set is local, i.e. its
    /// matches can be found in windows around changed bytes (see
    /// [`crate::locality`]); `None` when files must be scanned whole.
    pub fn local_match_len(&self) -> Option<u64> {
        self.local_match
    }

    /// Identifiers of the rules matching `data`; `name` appears in errors.
    pub fn scan_bytes(&self, name: &str, data: &[u8]) -> Result<Vec<String>> {
        self.session().scan_bytes(name, data)
    }

    /// A scanner to reuse across many files.
    pub fn session(&self) -> YaraSession<'_> {
        YaraSession {
            #[cfg(feature = "yara")]
            scanner: yara_x::Scanner::new(&self.rules),
            #[cfg(not(feature = "yara"))]
            _rules: std::marker::PhantomData,
        }
    }
}

/// A reusable scanner over one [`YaraScanner`]'s rules.
pub struct YaraSession<'r> {
    #[cfg(feature = "yara")]
    scanner: yara_x::Scanner<'r>,
    #[cfg(not(feature = "yara"))]
    _rules: std::marker::PhantomData<&'r ()>,
}

impl YaraSession<'_> {
    /// Identifiers of the rules matching `data`, sorted.
    pub fn scan_bytes(&mut self, name: &str, data: &[u8]) -> Result<Vec<String>> {
        #[cfg(feature = "yara")]
        {
            let results = self.scanner.scan(data).map_err(|e| ScanError::YaraScan {
                name: name.to_string(),
                message: e.to_string(),
            })?;
            let mut names: Vec<String> = results
                .matching_rules()
                .map(|r| r.identifier().to_string())
                .collect();
            names.sort();
            Ok(names)
        }
        #[cfg(not(feature = "yara"))]
        {
            let _ = data;
            Err(ScanError::NotBuilt {
                what: format!("YARA scanning of {name}"),
                feature: "yara".to_string(),
            })
        }
    }
}

#[cfg(all(test, feature = "yara"))]
mod tests {
    use super::*;

    pub(crate) const EICAR: &[u8] =
        b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

    #[test]
    fn builtin_rules_match_eicar_and_marker() {
        let y = YaraScanner::builtin().unwrap();
        assert_eq!(
            y.scan_bytes("eicar", EICAR).unwrap(),
            vec!["EICAR_Test_File"]
        );
        assert_eq!(
            y.scan_bytes("m", b"xx LIFEBOAT-TEST-MARKER-7f3a yy")
                .unwrap(),
            vec!["Lifeboat_Test_Marker"]
        );
        assert!(y.scan_bytes("clean", b"nothing here").unwrap().is_empty());
        assert!(y.scan_bytes("empty", b"").unwrap().is_empty());
    }

    #[test]
    fn bad_rules_are_an_error_naming_the_source() {
        let e = YaraScanner::from_rules_named("bad.yar", "rule { nope").unwrap_err();
        assert!(e.to_string().contains("bad.yar"), "{e}");
    }

    #[test]
    fn fingerprint_changes_with_rules() {
        let a = YaraScanner::from_rules("rule a { condition: true }").unwrap();
        let b = YaraScanner::from_rules("rule b { condition: true }").unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.local_match_len(), None);
        assert_eq!(YaraScanner::builtin().unwrap().local_match_len(), Some(68));
        assert_eq!(a.scan_bytes("x", b"x").unwrap(), vec!["a"]);
    }
}

#[cfg(all(test, not(feature = "yara")))]
mod tests_without_feature {
    use super::*;

    #[test]
    fn without_feature_yara_is_a_clear_error() {
        let e = YaraScanner::builtin().unwrap_err();
        assert!(matches!(e, ScanError::NotBuilt { .. }), "{e:?}");
        assert!(e.to_string().contains("`yara` feature"), "{e}");
    }
}
