//! Rule locality: whether a YARA rule set can be checked on a changed file
//! by scanning only windows around the changed bytes, and which windows.
//!
//! A rule set is *local* with maximum match length `M` when every rule's
//! condition is a disjunction (`or`) of plain string-match atoms (`$a`,
//! `any of them`, `1 of ($a*, $b)`) and every string matches a bounded
//! number of bytes. Anything else makes the whole set non-local (and files
//! are scanned whole): imports and includes, `global`/`private` rules,
//! references to other rules, `filesize`, `at`/`in` anchors, counts `#a`,
//! offsets `@a`, lengths `!a`, `for`, `N of` with N > 1, `all of`, `none
//! of`, `true`/`false`, regular expressions, the `fullword`, `base64` and
//! `base64wide` modifiers (their matches depend on bytes outside the
//! string), hex strings with an unbounded jump, a rule without strings, an
//! empty rule set and any source with parse errors. `M` is the longest
//! possible match over all strings: a text string's length (twice that
//! with `wide`; `nocase`, `ascii`, `xor` and `private` keep it), a hex
//! string's bytes plus the upper bounds of its jumps (the longest branch of
//! each alternative).
//!
//! Why windows suffice: a match of a local rule is some string matching at
//! some offset `s`, which depends only on the bytes `[s, s + L)` with
//! `L <= M`. Let `B_old` be a file's previous bytes, scanned *clean* (no
//! rule matched), and `B_new` the same size with bytes differing from
//! `B_old` only inside ranges `R`. A match in `B_new` that overlaps no
//! range of `R` reads the same bytes in `B_old`, so it would have matched
//! there: impossible. So every match in `B_new` overlaps some `[a, b)` of
//! `R`, i.e. `s < b` and `s + L > a`, hence `a - (M - 1) <= s` and
//! `s + L <= b + (M - 1)`: it lies inside the window
//! `[a - (M - 1), b + (M - 1))` (clipped to the file). A rule matches the
//! file iff it matches in some window, since a window is a substring of
//! the file (a match there is a match in the file). This only holds when
//! the previous result was clean; a file whose previous bytes matched is
//! scanned whole.

use std::ops::Range;

/// The windows to scan for `changed` file ranges of a file of `size`
/// bytes under a local rule set with maximum match length `max_match`:
/// each range widened by `max_match - 1` bytes on both sides, clipped to
/// the file, sorted, overlapping and touching windows merged.
pub fn windows(changed: &[Range<u64>], max_match: u64, size: u64) -> Vec<Range<u64>> {
    let reach = max_match.saturating_sub(1);
    merged(
        changed
            .iter()
            .filter(|r| r.start < r.end)
            .map(|r| r.start.saturating_sub(reach)..r.end.saturating_add(reach).min(size))
            .collect(),
    )
}

/// `ranges` sorted, empty ones dropped, overlapping and touching ones
/// merged.
pub(crate) fn merged(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// The maximum match length of the rule set in `source` when it is local
/// (see the module doc); `None` when it is not, or cannot be told.
#[cfg(feature = "yara")]
pub fn local_match_len(source: &str) -> Option<u64> {
    use yara_x_parser::ast::{Item, AST};
    let ast = AST::from(source);
    if !ast.errors().is_empty() {
        return None;
    }
    let mut max = 0u64;
    let mut rules = 0usize;
    for item in ast.items() {
        let Item::Rule(rule) = item else {
            return None;
        };
        if !rule.flags.is_empty() || !local_condition(&rule.condition) {
            return None;
        }
        let patterns = rule.patterns.as_deref()?;
        if patterns.is_empty() {
            return None;
        }
        for p in patterns {
            max = max.max(pattern_len(p)?);
        }
        rules += 1;
    }
    (rules > 0 && max > 0).then_some(max)
}

/// Without the `yara` feature there are no rules to look at.
#[cfg(not(feature = "yara"))]
pub fn local_match_len(_source: &str) -> Option<u64> {
    None
}

/// A disjunction of unanchored string matches and `any`/`1 of` sets.
#[cfg(feature = "yara")]
fn local_condition(e: &yara_x_parser::ast::Expr<'_>) -> bool {
    use yara_x_parser::ast::{Expr, OfItems, Quantifier};
    match e {
        Expr::Or(n) => n.operands().all(local_condition),
        Expr::PatternMatch(p) => p.anchor.is_none(),
        Expr::Of(of) => {
            let one = match &of.quantifier {
                Quantifier::Any { .. } => true,
                Quantifier::Expr(Expr::LiteralInteger(i)) => !i.is_unsigned && i.value == 1,
                _ => false,
            };
            one && of.anchor.is_none() && matches!(of.items, OfItems::PatternSet(_))
        }
        _ => false,
    }
}

/// The longest match of a string, when bounded and local.
#[cfg(feature = "yara")]
fn pattern_len(p: &yara_x_parser::ast::Pattern<'_>) -> Option<u64> {
    use yara_x_parser::ast::{Pattern, PatternModifier};
    for m in p.modifiers().iter() {
        match m {
            PatternModifier::Ascii { .. }
            | PatternModifier::Wide { .. }
            | PatternModifier::Nocase { .. }
            | PatternModifier::Private { .. }
            | PatternModifier::Xor { .. } => {}
            PatternModifier::Fullword { .. }
            | PatternModifier::Base64 { .. }
            | PatternModifier::Base64Wide { .. } => return None,
        }
    }
    match p {
        Pattern::Text(t) => {
            let len = u64::try_from(t.text.value.len()).ok()?;
            if p.modifiers().wide().is_some() {
                len.checked_mul(2)
            } else {
                Some(len)
            }
        }
        Pattern::Hex(h) => hex_len(&h.sub_patterns),
        Pattern::Regexp(_) => None,
    }
}

/// Bytes plus jump upper bounds, the longest branch of each alternative.
#[cfg(feature = "yara")]
fn hex_len(sub: &yara_x_parser::ast::HexSubPattern) -> Option<u64> {
    use yara_x_parser::ast::HexToken;
    let mut len = 0u64;
    for t in sub.iter() {
        let add = match t {
            HexToken::Byte(_) | HexToken::NotByte(_) => 1,
            HexToken::Jump(j) => u64::from(j.end?),
            HexToken::Alternative(a) => {
                let mut longest = 0u64;
                for alt in &a.alternatives {
                    longest = longest.max(hex_len(alt)?);
                }
                longest
            }
        };
        len = len.checked_add(add)?;
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lists of one range are what the function takes and gives.
    #[allow(clippy::single_range_in_vec_init)]
    #[test]
    fn windows_widen_clip_and_merge() {
        // M = 10: 9 bytes on each side.
        assert_eq!(windows(&[100..110], 10, 1000), vec![91..119]);
        assert_eq!(windows(&[5..6], 10, 12), vec![0..12]);
        // Out of order, overlapping after widening, touching, apart.
        assert_eq!(
            windows(&[200..210, 100..110, 125..130, 300..301], 10, 1000),
            vec![91..139, 191..219, 291..310]
        );
        assert_eq!(windows(&[10..20, 38..40], 10, 1000), vec![1..49]);
        // Empty ranges and ranges past the end give nothing.
        assert_eq!(windows(&[7..7, 2000..2100], 10, 1000), vec![]);
        assert_eq!(windows(&[], 10, 1000), vec![]);
        // M = 1: the changed bytes alone.
        assert_eq!(windows(&[3..4], 1, 10), vec![3..4]);
        assert_eq!(
            windows(&[u64::MAX - 1..u64::MAX], 10, u64::MAX),
            vec![u64::MAX - 10..u64::MAX]
        );
    }

    #[cfg(feature = "yara")]
    #[test]
    fn builtin_rules_are_local_with_the_eicar_length() {
        assert_eq!(local_match_len(crate::yara::BUILTIN_RULES), Some(68));
    }

    #[cfg(feature = "yara")]
    #[test]
    fn local_rule_sets_and_their_longest_match() {
        let local = |strings: &str, cond: &str| {
            local_match_len(&format!(
                "rule r {{ strings: {strings} condition: {cond} }}"
            ))
        };
        assert_eq!(local(r#"$a = "abcd""#, "$a"), Some(4));
        assert_eq!(local(r#"$a = "abcd" wide nocase"#, "$a"), Some(8));
        assert_eq!(
            local(r#"$a = "abcd" ascii wide xor private"#, "$a"),
            Some(8)
        );
        assert_eq!(local(r#"$a = "a\x00\"b""#, "$a"), Some(4));
        assert_eq!(
            local("$h = { 4D 5A [2-6] ?? ~00 ( 01 02 03 | 04 ) }", "$h"),
            Some(13)
        );
        assert_eq!(local("$h = { 4D [4] 5A [-3] 00 }", "$h"), Some(10));
        assert_eq!(
            local(r#"$a1 = "x" $a2 = "yyy" $b = "zz""#, "any of ($a*) or $b"),
            Some(3)
        );
        assert_eq!(local(r#"$a = "x" $b = "yy""#, "any of them"), Some(2));
        assert_eq!(
            local(r#"$a = "x" $b = "yy""#, "1 of them or ($a or $b)"),
            Some(2)
        );
        // The maximum over several rules.
        assert_eq!(
            local_match_len(
                r#"rule a { strings: $a = "12345" condition: $a }
                   rule b { meta: x = 1 strings: $b = "1234567" wide condition: $b }"#
            ),
            Some(14)
        );
    }

    #[cfg(feature = "yara")]
    #[test]
    fn every_non_local_construct_is_refused() {
        let rule = |strings: &str, cond: &str| {
            format!("rule r {{ strings: {strings} condition: {cond} }}")
        };
        let a = r#"$a = "abcd""#;
        let ab = r#"$a = "abcd" $b = "efgh""#;
        let cases = [
            format!("import \"pe\"\n{}", rule(a, "$a")),
            format!("include \"other.yar\"\n{}", rule(a, "$a")),
            format!("global {}", rule(a, "$a")),
            format!("private {}", rule(a, "$a")),
            format!("{}\nrule s {{ condition: r }}", rule(a, "$a")),
            rule(a, "$a or r2"),
            rule(a, "$a and filesize < 100"),
            rule(a, "$a at 0"),
            rule(a, "$a in (0..100)"),
            rule(a, "#a > 0"),
            rule(a, "@a[1] == 0"),
            rule(a, "!a[1] == 4"),
            rule(a, "not $a"),
            rule(ab, "$a and $b"),
            rule(ab, "2 of them"),
            rule(ab, "all of them"),
            rule(ab, "none of them"),
            rule(ab, "50% of them"),
            rule(ab, "any of them in (0..10)"),
            rule(ab, "any of ($a, true)"),
            rule(a, "for any of them : ( $ )"),
            rule(a, "for any i in (1..#a) : ( @a[i] > 0 )"),
            rule(a, "true or $a"),
            rule(r#"$a = "abcd" fullword"#, "$a"),
            rule(r#"$a = "abcd" base64"#, "$a"),
            rule(r#"$a = "abcd" base64wide"#, "$a"),
            rule("$a = /ab+c/", "$a"),
            rule("$h = { 4D [2-] 5A }", "$h"),
            rule("$h = { 4D [-] 5A }", "$h"),
            rule("$h = { 4D ( 00 [1-] 01 | 02 ) 5A }", "$h"),
            "rule r { condition: true }".to_string(),
            String::new(),
            "rule r { strings: $a = \"x\" condition: ".to_string(),
        ];
        for c in &cases {
            assert_eq!(local_match_len(c), None, "{c}");
        }
        // The base of the cases above is local.
        assert_eq!(local_match_len(&rule(a, "$a")), Some(4));
    }
}
