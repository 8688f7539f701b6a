//! Reads the numbered properties of `spec/PROTOCOL.md`.
//!
//! A property is a heading `#### <ID>. <title>` (ids such as `D1`, `S2`, `L3`), followed by its
//! text and a line `- Tests: ` listing, in backticks, the tests that check it (`module::test`),
//! and, for protocol properties, a line `- Enforced in: ` naming the source files and the
//! functions in each that enforce it and a line `- Checker: ` naming the checker property.

/// One numbered property of the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    /// The id, e.g. `D1`.
    pub id: String,
    /// The heading's title.
    pub title: String,
    /// The tests named on its `- Tests:` line.
    pub tests: Vec<String>,
    /// The checker properties named on its `- Checker:` line.
    pub checker: Vec<String>,
    /// Where it is enforced, from its `- Enforced in:` line: each source file (from the
    /// workspace root) with the functions named after it.
    pub enforced: Vec<(String, Vec<String>)>,
}

/// The spec's text, embedded at build time so the checker binary always carries the spec it
/// was built against.
pub const PROTOCOL_MD: &str = include_str!("../../spec/PROTOCOL.md");

fn backticked(line: &str) -> Vec<String> {
    line.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Every property in `spec`, in order.
pub fn properties(spec: &str) -> Vec<Property> {
    let mut out: Vec<Property> = Vec::new();
    for line in spec.lines() {
        if let Some(rest) = line.strip_prefix("#### ") {
            if let Some((id, title)) = rest.split_once(". ") {
                let is_id = id.len() >= 2
                    && id.starts_with(|c: char| c.is_ascii_uppercase())
                    && id[1..].chars().all(|c| c.is_ascii_digit());
                if is_id {
                    out.push(Property {
                        id: id.to_owned(),
                        title: title.trim().to_owned(),
                        tests: vec![],
                        checker: vec![],
                        enforced: vec![],
                    });
                }
            }
        } else if let Some(p) = out.last_mut() {
            let l = line.trim_start();
            if let Some(rest) = l.strip_prefix("- Tests:") {
                p.tests.extend(backticked(rest));
            } else if let Some(rest) = l.strip_prefix("- Checker:") {
                p.checker.extend(backticked(rest));
            } else if let Some(rest) = l.strip_prefix("- Enforced in:") {
                for item in backticked(rest) {
                    if item.ends_with(".rs") {
                        p.enforced.push((item, Vec::new()));
                    } else if let Some((_, fns)) = p.enforced.last_mut() {
                        fns.push(item);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() && name != "target" && !name.starts_with('.') {
                rust_sources(&p, out);
            } else if name.ends_with(".rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn parses_ids_tests_and_checker_lines() {
        let text = "#### D1. A thing\nbody\n- Enforced in: `a/b.rs` (`f`, `g`); `c.rs` (`h`)\n- Tests: `a::b`, `c`\n- Checker: `S1`\n#### Not a property\n#### S12. Safety\n- Tests: `x`\n";
        let ps = properties(text);
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].id, "D1");
        assert_eq!(ps[0].tests, vec!["a::b", "c"]);
        assert_eq!(ps[0].checker, vec!["S1"]);
        assert_eq!(
            ps[0].enforced,
            vec![
                ("a/b.rs".to_owned(), vec!["f".to_owned(), "g".to_owned()]),
                ("c.rs".to_owned(), vec!["h".to_owned()])
            ]
        );
        assert_eq!(ps[1].id, "S12");
        assert!(ps[1].enforced.is_empty());
    }

    /// Every property in the spec names at least one test, every named test exists in the
    /// workspace, and no id is used twice.
    #[test]
    fn every_spec_property_names_existing_tests() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut files = Vec::new();
        rust_sources(root, &mut files);
        let sources: String = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        let props = properties(PROTOCOL_MD);
        assert!(!props.is_empty(), "spec/PROTOCOL.md has no properties");
        let mut ids: Vec<&str> = props.iter().map(|p| p.id.as_str()).collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len(), "a property id is used twice");
        // A test is a `fn name(`, or an entry `name: ...` of a test-generating macro.
        let defined = |name: &str| {
            sources.lines().map(str::trim_start).any(|l| {
                l.strip_prefix("fn ")
                    .or_else(|| l.strip_prefix("async fn "))
                    .is_some_and(|r| r.starts_with(&format!("{name}(")))
                    || l.starts_with(&format!("{name}:"))
            })
        };
        for p in &props {
            assert!(!p.tests.is_empty(), "{} names no test", p.id);
            for t in &p.tests {
                let name = t.rsplit("::").next().unwrap();
                assert!(
                    defined(name),
                    "{} names test `{t}`, which does not exist",
                    p.id
                );
            }
        }
    }

    /// A newcomer finds, for every protocol property (S, V, L, N and A ids), the module that
    /// enforces it: its `- Enforced in:` line names files that exist, each with functions it
    /// defines.
    #[test]
    fn every_protocol_property_names_where_it_is_enforced() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let props = properties(PROTOCOL_MD);
        let protocol: Vec<&Property> = props
            .iter()
            .filter(|p| p.id.starts_with(['S', 'V', 'L', 'N', 'A']))
            .collect();
        assert!(
            protocol.len() >= 28,
            "{} protocol properties",
            protocol.len()
        );
        for p in protocol {
            assert!(!p.enforced.is_empty(), "{} names no enforcing module", p.id);
            for (file, fns) in &p.enforced {
                let text = std::fs::read_to_string(root.join(file))
                    .unwrap_or_else(|e| panic!("{} names {file}: {e}", p.id));
                assert!(!fns.is_empty(), "{} names no function in {file}", p.id);
                for f in fns {
                    let defined = text.lines().map(str::trim_start).any(|l| {
                        ["fn ", "pub fn ", "pub(super) fn ", "pub(crate) fn "]
                            .iter()
                            .any(|v| {
                                l.strip_prefix(v).is_some_and(|r| {
                                    r.starts_with(&format!("{f}("))
                                        || r.starts_with(&format!("{f}<"))
                                })
                            })
                    });
                    assert!(
                        defined,
                        "{} names `{f}` in {file}, which does not define it",
                        p.id
                    );
                }
            }
        }
    }
}
