//! The Configuration table of `auth-server/README.md` is the one reference
//! for the server's environment variables. These tests hold it to the code:
//! every variable the configuration reads is in the table, and every
//! variable in the table is read, by [`Config::from_lookup`] or by the
//! binary's logging set-up in `main.rs`.

use std::cell::RefCell;
use std::collections::BTreeSet;

use crate::config::Config;

/// The crate's README, whose Configuration table is checked.
const README: &str = include_str!("../README.md");

/// The binary's source, which reads the logging variables itself.
const MAIN: &str = include_str!("main.rs");

/// The variables named in the first column of the table under the
/// `## Configuration` heading (up to the next `## ` heading).
fn documented(readme: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_section = false;
    for line in readme.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            in_section = heading.trim() == "Configuration";
            continue;
        }
        if !in_section {
            continue;
        }
        let Some(cell) = line.strip_prefix("| `") else {
            continue;
        };
        if let Some((name, _)) = cell.split_once('`') {
            names.insert(name.to_owned());
        }
    }
    names
}

/// The variables [`Config::from_lookup`] asks for, given `set` (a minimal
/// valid environment) and nothing else.
fn read_by_config(set: &[(&str, &str)]) -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    let config = Config::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        set.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    });
    if let Err(err) = config {
        panic!("the minimal environment {set:?} must configure the server: {err}");
    }
    asked.into_inner()
}

/// The variables `main.rs` reads itself, through its `env_var("NAME")`.
fn read_by_main(source: &str) -> BTreeSet<String> {
    source
        .split("env_var(\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name.to_owned()))
        .collect()
}

/// Every variable the server reads, in either verification mode.
fn read_by_the_server() -> BTreeSet<String> {
    let mut read = read_by_config(&[
        ("ABLY_API_KEY", "app.key:s3cr3t"),
        ("AUTH_APP_JWT_SECRET", "app-secret"),
    ]);
    read.extend(read_by_config(&[
        ("ABLY_API_KEY", "app.key:s3cr3t"),
        ("AUTH_JWKS_URL", "https://idp.example/.well-known/jwks.json"),
        ("AUTH_JWT_ISSUER", "https://idp.example/"),
        ("AUTH_JWT_AUDIENCE", "api"),
    ]));
    read.extend(read_by_main(MAIN));
    read
}

#[test]
fn the_readme_configuration_table_lists_exactly_the_variables_the_server_reads() {
    let documented = documented(README);
    let read = read_by_the_server();
    let undocumented: Vec<_> = read.difference(&documented).collect();
    let unread: Vec<_> = documented.difference(&read).collect();
    assert!(
        undocumented.is_empty() && unread.is_empty(),
        "auth-server/README.md's Configuration table and the code disagree.\n\
         read but not in the table: {undocumented:?}\n\
         in the table but never read: {unread:?}"
    );
}

#[test]
fn the_check_sees_every_part_of_what_it_compares() {
    // The table parser, on a table of two rows in the right section only.
    let readme = "## Endpoints\n\n| `NOT_THIS` | x |\n\n## Configuration\n\n\
                  | variable | default |\n| --- | --- |\n| `A_ONE` | x |\n| `B_TWO` | y |\n\n\
                  ## Connections\n\n| `NOR_THIS` | z |\n";
    assert_eq!(
        documented(readme),
        BTreeSet::from(["A_ONE".to_owned(), "B_TWO".to_owned()])
    );
    // The real table is found, and holds the variables of both sources.
    let real = documented(README);
    assert!(real.contains("ABLY_API_KEY"), "{real:?}");
    assert!(real.contains("AUTH_MAX_CONNECTIONS"), "{real:?}");
    assert_eq!(
        read_by_main(MAIN),
        BTreeSet::from(["LOG_FORMAT".to_owned(), "RUST_LOG".to_owned()])
    );
    // The recording lookup sees optional variables that are unset.
    let read = read_by_config(&[("ABLY_API_KEY", "a.b:c"), ("AUTH_APP_JWT_SECRET", "s")]);
    assert!(read.contains("AUTH_POLICY_RELOAD"), "{read:?}");
}
