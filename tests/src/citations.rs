//! Every document the repository cites is in the repository.
//!
//! Code, comments and docs cite the project's reference as
//! `docs/<file>.md#<heading-anchor>` (or `docs/<file>.md` for a whole
//! document), where the anchor is the one GitHub derives from the heading.
//! This walks the repository's text files and fails, naming `file:line`,
//! when:
//!
//! - a cited `docs/` file does not exist, or has no heading with that anchor;
//! - a relative Markdown link in a `.md` file points at a missing file or
//!   heading, or out of the repository;
//! - an upper-case document name (the way handouts and top-level documents
//!   such as the architecture page are named) matches no file in the
//!   repository;
//! - a section sign is not the section of a named public standard
//!   (`RFC 3284 §5.3`, `HTML §9.2.6`): a bare section number cites nothing;
//! - a path outside the repository is named (a shared work directory, a
//!   sibling checkout).
//!
//! The rules are written to survive their own source: the strings they look
//! for are spelled here with escapes or split literals.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

/// The section sign, which must follow the name of a public standard.
const SECTION: char = '\u{a7}';

/// Names never walked: build output, installed packages, and Git's data (a
/// directory, or in a worktree a file naming one outside the repository).
const SKIPPED: [&str; 3] = ["target", "node_modules", ".git"];

/// One text file of the repository: its path relative to the root, `/`
/// separated, and its contents.
struct TextFile {
    path: String,
    text: String,
}

/// Reads every UTF-8 text file under `root`, hidden ones (`.ci/`,
/// `.env.example`) included, skipping [`SKIPPED`] and binary files (a NUL
/// byte or invalid UTF-8).
fn walk(root: &Path) -> Vec<TextFile> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.expect("a directory entry");
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().expect("a file type");
            if SKIPPED.contains(&name.as_str()) {
                continue;
            }
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                let Ok(text) = String::from_utf8(bytes) else {
                    continue;
                };
                if text.contains('\0') {
                    continue;
                }
                let relative = path
                    .strip_prefix(root)
                    .expect("under the root")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                files.push(TextFile {
                    path: relative,
                    text,
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// The anchor GitHub gives a heading: lower case, punctuation other than `-`
/// and `_` dropped, spaces turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .flat_map(char::to_lowercase)
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The heading anchors of a Markdown document, outside fenced code blocks;
/// a repeated anchor gets `-1`, `-2`, … as on GitHub.
fn anchors(markdown: &str) -> HashSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = HashSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        let Some(text) = line.get(hashes..).and_then(|t| t.strip_prefix(' ')) else {
            continue;
        };
        if !(1..=6).contains(&hashes) {
            continue;
        }
        let base = slug(text.trim());
        let count = seen.entry(base.clone()).or_insert(0);
        let anchor = if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        };
        *count += 1;
        anchors.insert(anchor);
    }
    anchors
}

/// Whether `c` can be part of a path or anchor in a citation.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

/// The `docs/<file>.md[#anchor]` citations on `line`, as (file, anchor).
/// `docs/` must start a path: `src/pages/docs/x.md` or a URL is not one.
fn citations(line: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices("docs/") {
        if line[..at].chars().next_back().is_some_and(is_path_char) {
            continue;
        }
        let rest = &line[at..];
        let path_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
            .unwrap_or(rest.len());
        let path = rest[..path_len].trim_end_matches('.');
        if !path.ends_with(".md") {
            continue;
        }
        let after = &rest[path.len()..];
        let anchor = after.strip_prefix('#').map(|a| {
            a.chars()
                .take_while(|&c| c.is_alphanumeric() || matches!(c, '-' | '_'))
                .collect::<String>()
        });
        found.push((path.to_owned(), anchor));
    }
    found
}

/// The relative targets of Markdown links `[text](target)` on `line`;
/// URLs (anything with a scheme) and mail addresses are left out.
fn markdown_links(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices("](") {
        let rest = &line[at + 2..];
        let Some(end) = rest.find(')') else {
            continue;
        };
        let target = rest[..end].trim();
        let target = target.split_whitespace().next().unwrap_or("");
        if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        found.push(target.to_owned());
    }
    found
}

/// Normalises `base/relative` without touching the file system; `None` when
/// it climbs above the repository root.
fn join(base: &str, relative: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for component in Path::new(base).join(relative).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Upper-case document names (a capital, then capitals, digits, `-` or `_`,
/// then `.md`) on `line`.
fn document_names(line: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices(".md") {
        let after = line[at + 3..].chars().next();
        if after.is_some_and(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let start = line[..at]
            .rfind(|c: char| {
                !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_')
            })
            .map_or(0, |i| i + 1);
        let name = &line[start..at];
        let preceded_by_path = line[..start].ends_with('/');
        if name.len() >= 2
            && name.starts_with(|c: char| c.is_ascii_uppercase())
            && !preceded_by_path
        {
            found.push(&line[start..at + 3]);
        }
    }
    found
}

/// Whether the section sign at byte `at` follows a named standard:
/// `RFC <number> ` or `HTML `.
fn names_its_standard(line: &str, at: usize) -> bool {
    let before = &line[..at];
    if before.ends_with("HTML ") {
        return true;
    }
    let Some(before) = before.strip_suffix(' ') else {
        return false;
    };
    let number = before.trim_end_matches(|c: char| c.is_ascii_digit());
    number.len() < before.len() && number.ends_with("RFC ")
}

/// Paths outside the repository that must never be named.
fn outside_paths() -> [String; 2] {
    [["/wo", "rk/"].concat(), ["../sh", "ared"].concat()]
}

/// Checks `files` (the whole repository) and returns one `file:line: why`
/// per bad reference.
fn check(files: &[TextFile]) -> Vec<String> {
    let by_path: HashMap<&str, &str> = files
        .iter()
        .map(|f| (f.path.as_str(), f.text.as_str()))
        .collect();
    let names: HashSet<&str> = files
        .iter()
        .map(|f| f.path.rsplit('/').next().unwrap_or(&f.path))
        .collect();
    let mut anchor_cache: HashMap<String, HashSet<String>> = HashMap::new();
    let mut anchors_of = |path: &str| -> Option<HashSet<String>> {
        let text = by_path.get(path)?;
        Some(
            anchor_cache
                .entry(path.to_owned())
                .or_insert_with(|| anchors(text))
                .clone(),
        )
    };
    let outside = outside_paths();
    let mut problems = Vec::new();
    for file in files {
        let is_markdown = file.path.ends_with(".md");
        let dir = file.path.rsplit_once('/').map_or("", |(d, _)| d);
        for (index, line) in file.text.lines().enumerate() {
            let at = format!("{}:{}", file.path, index + 1);
            for (path, anchor) in citations(line) {
                match (anchors_of(&path), anchor) {
                    (None, _) => problems.push(format!("{at}: cites {path}, which does not exist")),
                    (Some(found), Some(anchor)) if !found.contains(&anchor) => problems.push(
                        format!("{at}: cites {path}#{anchor}, but {path} has no such heading"),
                    ),
                    _ => {}
                }
            }
            if is_markdown {
                for target in markdown_links(line) {
                    let (path, anchor) = match target.split_once('#') {
                        Some((path, anchor)) => (path, Some(anchor)),
                        None => (target.as_str(), None),
                    };
                    let resolved = if path.is_empty() {
                        Some(file.path.clone())
                    } else {
                        join(dir, path)
                    };
                    let Some(resolved) = resolved else {
                        problems.push(format!("{at}: links to {target}, outside the repository"));
                        continue;
                    };
                    let is_dir = files
                        .iter()
                        .any(|f| f.path.starts_with(&format!("{resolved}/")));
                    if !by_path.contains_key(resolved.as_str()) && !is_dir {
                        problems.push(format!("{at}: links to {target}, which does not exist"));
                    } else if let (Some(anchor), true) = (anchor, resolved.ends_with(".md")) {
                        let found = anchors_of(&resolved).unwrap_or_default();
                        if !found.contains(anchor) {
                            problems.push(format!(
                                "{at}: links to {target}, but {resolved} has no such heading"
                            ));
                        }
                    }
                }
            }
            for name in document_names(line) {
                if !names.contains(name) {
                    problems.push(format!(
                        "{at}: names {name}, which is not in the repository"
                    ));
                }
            }
            for (at_byte, _) in line.match_indices(SECTION) {
                if !names_its_standard(line, at_byte) {
                    problems.push(format!(
                        "{at}: a bare section number; cite a docs/ heading, or name the standard (RFC 3284 {SECTION}4.1)"
                    ));
                }
            }
            for path in &outside {
                if line.contains(path.as_str()) {
                    problems.push(format!("{at}: names {path}, outside the repository"));
                }
            }
        }
    }
    problems
}

/// The repository's root: the parent of this crate's directory.
fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository root")
        .to_path_buf()
}

#[test]
fn every_citation_in_the_repository_resolves() {
    let files = walk(&repository_root());
    assert!(
        files.iter().any(|f| f.path == "docs/protocol.md"),
        "the walk must see docs/"
    );
    let problems = check(&files);
    let mut report = String::new();
    for problem in &problems {
        let _ = writeln!(report, "  {problem}");
    }
    assert!(
        problems.is_empty(),
        "{} bad citation(s):\n{report}",
        problems.len()
    );
}

/// The lines of `files` that start a merge-conflict marker: seven `<`,
/// `=` or `>` at the start of a line (the `=` one alone on it), as Git
/// writes them.
fn conflict_markers(files: &[TextFile]) -> Vec<String> {
    let opening = "<".repeat(7) + " ";
    let closing = ">".repeat(7) + " ";
    let middle = "=".repeat(7);
    let mut found = Vec::new();
    for file in files {
        for (index, line) in file.text.lines().enumerate() {
            if line.starts_with(&opening) || line.starts_with(&closing) || line == middle {
                found.push(format!("{}:{}: {line}", file.path, index + 1));
            }
        }
    }
    found
}

#[test]
fn no_file_holds_a_merge_conflict_marker() {
    let found = conflict_markers(&walk(&repository_root()));
    assert!(
        found.is_empty(),
        "merge conflict markers:\n{}",
        found.join("\n")
    );
}

#[test]
fn conflict_markers_are_found_and_lookalikes_are_not() {
    let file = TextFile {
        path: "a.mjs".to_owned(),
        text: [
            "ok",
            &("<".repeat(7) + " HEAD"),
            "x",
            &"=".repeat(7),
            "y",
            &(">".repeat(7) + " branch"),
            "<<<< short",
            &"=".repeat(8),
        ]
        .join("\n"),
    };
    assert_eq!(
        conflict_markers(&[file]),
        [
            format!("a.mjs:2: {} HEAD", "<".repeat(7)),
            format!("a.mjs:4: {}", "=".repeat(7)),
            format!("a.mjs:6: {} branch", ">".repeat(7)),
        ]
    );
}

/// The checker on small made-up repositories. Citations are spelled with
/// [`cite`] so that this file does not cite anything itself.
mod checker {
    use super::*;

    /// `docs/<rest>`, built at run time.
    fn cite(rest: &str) -> String {
        ["docs", "/", rest].concat()
    }

    /// A small repository: one reference document and `source` citing it.
    fn repo(source: &str) -> Vec<TextFile> {
        vec![
            TextFile {
                path: cite("protocol.md"),
                text: "# Title\n\n## Token requests\n\n```text\n# not a heading\n```\n\n## Token requests\n"
                    .to_owned(),
            },
            TextFile {
                path: "ARCHITECTURE.md".to_owned(),
                text: String::new(),
            },
            TextFile {
                path: "src/lib.rs".to_owned(),
                text: source.to_owned(),
            },
        ]
    }

    #[test]
    fn a_citation_of_an_existing_heading_passes() {
        let source = format!(
            "// ok\n/// (`{}`), see {}.\n// RFC 3284 \u{a7}5.3, HTML \u{a7}9.2.6; ARCHITECTURE.md\n",
            cite("protocol.md#token-requests"),
            cite("protocol.md"),
        );
        assert_eq!(check(&repo(&source)), Vec::<String>::new());
    }

    #[test]
    fn a_citation_of_a_missing_heading_fails_naming_its_line() {
        let source = format!("// one\n// two (`{}`)\n", cite("protocol.md#token-request"));
        assert_eq!(
            check(&repo(&source)),
            [format!(
                "src/lib.rs:2: cites {}, but {} has no such heading",
                cite("protocol.md#token-request"),
                cite("protocol.md"),
            )]
        );
    }

    #[test]
    fn a_citation_of_a_missing_document_fails() {
        let source = format!("/// `{}`\n", cite("realtime.md#connections"));
        assert_eq!(
            check(&repo(&source)),
            [format!(
                "src/lib.rs:1: cites {}, which does not exist",
                cite("realtime.md")
            )]
        );
    }

    #[test]
    fn a_heading_inside_a_code_block_is_no_anchor_and_repeats_are_numbered() {
        let found = anchors(&repo("")[0].text);
        assert!(found.contains("token-requests"));
        assert!(found.contains("token-requests-1"));
        assert!(!found.contains("not-a-heading"));
    }

    #[test]
    fn a_handout_named_but_not_in_the_repository_fails() {
        let handout = ["ABLY-PROTOCOL", ".md"].concat();
        let problems = check(&repo(&format!("// as written in `{handout}`\n")));
        assert_eq!(
            problems,
            [format!(
                "src/lib.rs:1: names {handout}, which is not in the repository"
            )]
        );
    }

    #[test]
    fn a_bare_section_number_fails() {
        let problems = check(&repo("// the MAC (\u{a7}3.2)\n// RFC 3284 \u{a7}4.1\n"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("src/lib.rs:1: a bare section number"));
    }

    #[test]
    fn a_path_outside_the_repository_fails() {
        let outside = ["/wo", "rk/shared/STYLE"].concat();
        let problems = check(&repo(&format!("// see {outside}\n")));
        assert_eq!(
            problems,
            [format!(
                "src/lib.rs:1: names {}, outside the repository",
                ["/wo", "rk/"].concat()
            )]
        );
    }

    #[test]
    fn a_markdown_link_to_a_missing_heading_or_outside_fails() {
        let mut files = repo("");
        files.push(TextFile {
            path: cite("other.md"),
            text: "# Other\n\n[ok](protocol.md#token-requests) [ok](#other) \
                   [bad](protocol.md#nope) [out](../../x.md) [url](https://example.com/a.md)\n"
                .to_owned(),
        });
        assert_eq!(
            check(&files),
            [
                format!(
                    "{}:3: links to protocol.md#nope, but {} has no such heading",
                    cite("other.md"),
                    cite("protocol.md"),
                ),
                format!(
                    "{}:3: links to ../../x.md, outside the repository",
                    cite("other.md")
                ),
            ]
        );
    }

    #[test]
    fn slugs_follow_github() {
        assert_eq!(
            slug("Last-Event-ID and resumed channels"),
            "last-event-id-and-resumed-channels"
        );
        assert_eq!(
            slug("The ably-js token contract"),
            "the-ably-js-token-contract"
        );
        assert_eq!(slug("authCallback and authUrl"), "authcallback-and-authurl");
        assert_eq!(slug("Inside `mock-ably`"), "inside-mock-ably");
    }

    #[test]
    fn docs_in_a_longer_path_or_url_is_no_citation() {
        let urls = format!(
            "https://ably.com/{} and src/pages/{}",
            cite("sse.md"),
            cite("x.md")
        );
        assert!(citations(&urls).is_empty());
        assert_eq!(
            citations(&format!("(`{}`).", cite("protocol.md#the-message"))),
            [(cite("protocol.md"), Some("the-message".to_owned()))]
        );
    }
}
