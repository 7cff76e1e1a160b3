//! Each tidy check on small in-memory fixtures: it fires on the bad case
//! and stays quiet on the good one next to it.

use tally_tidy::*;

/// A fn spanning exactly `lines` lines from `fn` to `}`.
fn fn_of_lines(name: &str, lines: usize) -> String {
    assert!(lines >= 2);
    let mut src = format!("fn {name}() {{\n");
    for i in 0..lines - 2 {
        src.push_str(&format!("    let _x{i} = {i};\n"));
    }
    src.push_str("}\n");
    src
}

fn lines_of(violations: &[Violation]) -> Vec<usize> {
    violations.iter().map(|v| v.line).collect()
}

// ---------------------------------------------------------------- debug-assert-false

#[test]
fn debug_assert_false_is_flagged_with_its_line() {
    let src = "//! m\nfn f(x: u8) {\n    debug_assert!(false, \"x was {x}\");\n}\n";
    let found = check_debug_assert_false("a.rs", src);
    assert_eq!(lines_of(&found), [3]);
    assert_eq!(found[0].check, DEBUG_ASSERT_FALSE);
    assert!(
        found[0]
            .to_string()
            .starts_with("a.rs:3: [debug-assert-false]")
    );
}

#[test]
fn debug_assert_false_is_flagged_in_any_spacing_and_delimiter() {
    let src = "fn f() {\n    debug_assert!( false, \"a\");\n    debug_assert! (false);\n    \
               debug_assert!{false}\n    debug_assert![\n        false,\n    ];\n    \
               std::debug_assert!(false);\n}\n";
    assert_eq!(
        lines_of(&check_debug_assert_false("a.rs", src)),
        [2, 3, 4, 5, 8]
    );
}

#[test]
fn debug_assert_false_is_flagged_in_tests_and_macro_bodies() {
    let src = "macro_rules! m { () => { debug_assert!(false) }; }\n\
               #[cfg(test)]\nmod tests {\n    fn t() { debug_assert!(false); }\n}\n";
    assert_eq!(lines_of(&check_debug_assert_false("a.rs", src)), [1, 4]);
}

#[test]
fn debug_assert_of_a_condition_and_mentions_in_comments_pass() {
    let src = "/// Never `debug_assert!(false, ..)`.\n// debug_assert!(false)\n\
               fn f(x: u8) {\n    debug_assert!(x > 0);\n    assert!(false == (x == 0));\n    \
               let _s = \"debug_assert!(false)\";\n}\n";
    assert!(check_debug_assert_false("a.rs", src).is_empty());
}

// ---------------------------------------------------------------- fn-length

#[test]
fn fn_of_101_lines_is_flagged() {
    let src = fn_of_lines("long", 101);
    let found = check_fn_length("a.rs", &src, MAX_FN_LINES);
    assert_eq!(lines_of(&found), [1]);
    assert_eq!(found[0].check, FN_LENGTH);
    assert!(
        found[0].message.contains("`long` is 101 lines"),
        "{}",
        found[0]
    );
}

#[test]
fn fn_of_100_lines_passes() {
    let src = fn_of_lines("fits", 100);
    assert!(check_fn_length("a.rs", &src, MAX_FN_LINES).is_empty());
}

#[test]
fn fn_length_counts_from_the_fn_line_not_its_docs_or_attributes() {
    let src = format!(
        "/// Docs.\n/// More.\n#[inline]\n{}",
        fn_of_lines("fits", 100)
    );
    assert!(check_fn_length("a.rs", &src, MAX_FN_LINES).is_empty());
    let src = format!(
        "/// Docs.\n#[inline]\npub(crate)\n{}",
        fn_of_lines("long", 101)
    );
    assert_eq!(lines_of(&check_fn_length("a.rs", &src, MAX_FN_LINES)), [4]);
}

#[test]
fn long_methods_trait_defaults_and_nested_fns_are_flagged() {
    let body = fn_of_lines("inner", 101);
    let method = fn_of_lines("method", 101).replace('\n', "\n    ");
    let default = fn_of_lines("provided", 101).replace('\n', "\n    ");
    let src = format!(
        "struct S;\nimpl S {{\n    {method}\n}}\ntrait T {{\n    fn required(&self);\n    {default}\n}}\n\
         fn outer() {{\n{body}}}\n"
    );
    let found = check_fn_length("a.rs", &src, MAX_FN_LINES);
    let names: Vec<&str> = found
        .iter()
        .map(|v| v.message.split('`').nth(1).unwrap())
        .collect();
    assert_eq!(names, ["method", "provided", "outer", "inner"], "{found:?}");
}

#[test]
fn long_fns_in_cfg_test_modules_pass() {
    let src = format!(
        "#[cfg(test)]\nmod tests {{\n{}}}\n#[cfg(all(test, unix))]\n{}",
        fn_of_lines("a_test", 150),
        fn_of_lines("b_test", 150)
    );
    assert!(check_fn_length("a.rs", &src, MAX_FN_LINES).is_empty());
    let not_test = format!("#[cfg(not(test))]\n{}", fn_of_lines("real", 150));
    assert_eq!(check_fn_length("a.rs", &not_test, MAX_FN_LINES).len(), 1);
}

// ---------------------------------------------------------------- module-doc

#[test]
fn file_without_module_doc_is_flagged() {
    let found = check_module_doc("a.rs", "use std::fmt;\n");
    assert_eq!(lines_of(&found), [1]);
    assert_eq!(found[0].check, MODULE_DOC);
    assert_eq!(check_module_doc("a.rs", "").len(), 1);
}

#[test]
fn file_starting_with_an_item_doc_or_plain_comment_is_flagged() {
    assert_eq!(
        check_module_doc("a.rs", "/// An item doc.\nfn f() {}\n").len(),
        1
    );
    assert_eq!(
        check_module_doc("a.rs", "// Licence.\n//! Docs.\n").len(),
        1
    );
}

#[test]
fn file_starting_with_module_doc_passes() {
    assert!(check_module_doc("a.rs", "//! What this is.\n\nuse std::fmt;\n").is_empty());
    assert!(check_module_doc("a.rs", "\n//! After a blank line.\n").is_empty());
}

// ---------------------------------------------------------------- forbid-unsafe

#[test]
fn crate_root_without_forbid_unsafe_is_flagged() {
    let found = check_forbid_unsafe("lib.rs", "//! Docs.\n\nmod a;\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].check, FORBID_UNSAFE);
    // A deny can be overridden further down; only forbid counts.
    assert_eq!(
        check_forbid_unsafe("lib.rs", "#![deny(unsafe_code)]\n").len(),
        1
    );
    // Outer attributes are not the crate's.
    assert_eq!(
        check_forbid_unsafe("lib.rs", "#[forbid(unsafe_code)]\nfn f() {}\n").len(),
        1
    );
}

#[test]
fn crate_root_with_forbid_unsafe_passes() {
    assert!(check_forbid_unsafe("lib.rs", "//! Docs.\n\n#![forbid(unsafe_code)]\n").is_empty());
    assert!(check_forbid_unsafe("lib.rs", "#![forbid(missing_docs, unsafe_code)]\n").is_empty());
}

// ---------------------------------------------------------------- hash-iteration

const STRUCTS: &str = "struct Ledger { accounts: FxHashMap<u64, u8>, assets: Vec<u8> }\n\
                       struct Parsed { accounts: Vec<u64> }\n\
                       struct Dirty { keys: FxHashSet<u64> }\n";

fn hash_iteration(src: &str) -> Vec<Violation> {
    let fields = HashFields::of(STRUCTS).expect("fixture parses");
    check_hash_iteration("a.rs", src, &fields)
}

#[test]
fn for_over_a_hash_map_field_of_self_is_flagged() {
    let src = "impl Ledger {\n    fn f(&self) {\n        for (id, a) in &self.accounts {}\n    }\n    \
               fn g(&mut self) {\n        for a in self.accounts.values() {}\n        \
               for x in &mut self.accounts {}\n    }\n}\n";
    let found = hash_iteration(src);
    // values() is clippy's (disallowed-methods); tidy sees the bare loops.
    assert_eq!(lines_of(&found), [3, 7], "{found:?}");
    assert_eq!(found[0].check, HASH_ITERATION);
}

#[test]
fn into_iter_on_a_hash_map_is_flagged() {
    let src = "impl Ledger {\n    fn f(self) -> Vec<(u64, u8)> {\n        \
               self.accounts.into_iter().collect()\n    }\n}\n";
    assert_eq!(lines_of(&hash_iteration(src)), [3]);
}

#[test]
fn for_over_a_hash_map_field_of_a_typed_local_or_param_is_flagged() {
    let src = "fn f(l: &Ledger) {\n    for a in &l.accounts {}\n    let m = Ledger::empty();\n    \
               for a in &m.accounts {}\n    let p = Parsed::default();\n    for a in &p.accounts {}\n}\n";
    assert_eq!(lines_of(&hash_iteration(src)), [2, 4]);
}

#[test]
fn for_over_a_same_named_vec_field_passes() {
    let src = "impl Parsed {\n    fn f(self) {\n        for a in self.accounts {}\n    }\n}\n\
               fn g(p: Parsed) {\n    for a in &p.accounts {}\n}\n";
    assert!(hash_iteration(src).is_empty());
}

#[test]
fn unambiguous_hash_field_of_an_unknown_receiver_is_flagged() {
    // `keys` is a hash set in every struct that has it; `accounts` is not.
    let src =
        "fn f(x: Other) {\n    for k in &x.dirty.keys {}\n    for a in &x.dirty.accounts {}\n}\n";
    assert_eq!(lines_of(&hash_iteration(src)), [2]);
}

#[test]
fn for_over_a_hash_typed_local_or_param_is_flagged() {
    let src = "fn f(s: &FxHashSet<u8>) {\n    for x in s {}\n    let m: HashMap<u8, u8> = make();\n    \
               for x in &m {}\n    let d = FxHashMap::default();\n    for x in d {}\n    \
               let c = v.iter().collect::<FxHashSet<_>>();\n    for x in c.into_iter() {}\n    \
               let v: Vec<u8> = make();\n    for x in &v {}\n}\n";
    assert_eq!(lines_of(&hash_iteration(src)), [2, 4, 6, 8]);
}

#[test]
fn hash_iteration_under_allow_disallowed_methods_passes() {
    let src = "impl Ledger {\n    fn f(&self) {\n        // sorted below\n        \
               #[allow(clippy::disallowed_methods)]\n        for a in &self.accounts {}\n        \
               #[allow(clippy::disallowed_methods)]\n        let v: Vec<_> = self.accounts.into_iter().collect();\n    }\n    \
               #[allow(dead_code, clippy::disallowed_methods)]\n    fn g(&self) {\n        for a in &self.accounts {}\n    }\n}\n";
    assert!(hash_iteration(src).is_empty(), "{:?}", hash_iteration(src));
}

#[test]
fn other_allows_do_not_excuse_hash_iteration() {
    let src = "impl Ledger {\n    #[allow(dead_code)]\n    fn f(&self) {\n        for a in &self.accounts {}\n    }\n}\n";
    assert_eq!(lines_of(&hash_iteration(src)), [4]);
}

// ---------------------------------------------------------------- allow-reason

#[test]
fn allow_disallowed_without_a_comment_is_flagged() {
    let src = "fn f() {\n    #[allow(clippy::disallowed_methods)]\n    let x = 1;\n}\n";
    let found = check_allow_reason("a.rs", src);
    assert_eq!(lines_of(&found), [2]);
    assert_eq!(found[0].check, ALLOW_REASON);
    // A doc comment documents the item; it is not the reason.
    let src = "/// Does f.\n#[allow(clippy::disallowed_types)]\nfn f() {}\n";
    assert_eq!(lines_of(&check_allow_reason("a.rs", src)), [2]);
}

#[test]
fn allow_disallowed_with_a_comment_passes() {
    let src = "fn f() {\n    // Sorted below: order cannot leak.\n    #[allow(clippy::disallowed_methods)]\n    \
               let x = 1;\n    #[allow(clippy::disallowed_methods)] // summed only\n    let y = 2;\n}\n\
               /// Docs.\n// Why.\n#[inline]\n#[allow(clippy::disallowed_methods)]\nfn g() {}\n";
    assert!(check_allow_reason("a.rs", src).is_empty());
}

#[test]
fn crate_wide_allow_disallowed_is_flagged_even_with_a_comment() {
    let src = "//! Docs.\n// Because.\n#![allow(clippy::disallowed_methods)]\n";
    assert_eq!(lines_of(&check_allow_reason("a.rs", src)), [3]);
}

// ---------------------------------------------------------------- ledger-deps

#[test]
fn ledger_depending_on_rand_or_tokio_is_flagged() {
    let manifest = "[package]\nname = \"tally-ledger\"\n\n[dependencies]\nserde = \"1\"\nrand.workspace = true\n\
                    fastish = { package = \"fastrand\", version = \"2\" }\n\n\
                    [target.'cfg(unix)'.dependencies]\ntokio = \"1\"\n";
    let found = check_ledger_deps("Cargo.toml", manifest);
    assert_eq!(lines_of(&found), [6, 7, 10], "{found:?}");
    assert!(found.iter().all(|v| v.check == LEDGER_DEPS));
}

#[test]
fn ledger_dev_dependency_on_rand_passes() {
    let manifest =
        "[dependencies]\nserde = \"1\"\n\n[dev-dependencies]\nrand = \"0.9\"\nproptest = \"1\"\n";
    assert!(check_ledger_deps("Cargo.toml", manifest).is_empty());
}

// ---------------------------------------------------------------- the tree

#[test]
fn check_tree_applies_each_check_to_its_scope() {
    let root = tempfile::tempdir().expect("tempdir");
    let write = |path: &str, text: &str| {
        let path = root.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    for file in FORBID_UNSAFE_ROOTS {
        write(file, "//! Root.\n#![forbid(unsafe_code)]\n");
    }
    write("ledger/Cargo.toml", "[dependencies]\nserde = \"1\"\n");
    write("ledger/src/bad.rs", "fn f() { debug_assert!(false); }\n");
    write("node/src/grpc/x.rs", "fn g() { debug_assert!(false); }\n");
    write("client/src/ok.rs", "//! Fine.\n");
    write("bench/src/free.rs", "fn h() {}\n");
    write(
        "ledger/src/long.rs",
        &format!("//! Long.\n{}", fn_of_lines("long", 101)),
    );

    let report = check_tree(root.path());
    let found: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    let summary: Vec<(&str, usize, &str)> = report
        .violations
        .iter()
        .map(|v| (v.file.as_str(), v.line, v.check))
        .collect();
    assert_eq!(
        summary,
        [
            ("ledger/src/bad.rs", 1, DEBUG_ASSERT_FALSE),
            ("ledger/src/bad.rs", 1, MODULE_DOC),
            ("ledger/src/long.rs", 2, FN_LENGTH),
            // node/src gets the module-doc check only.
            ("node/src/grpc/x.rs", 1, MODULE_DOC),
        ],
        "{found:#?}"
    );
    let rendered = render(&report);
    assert!(rendered.contains("fix [fn-length]"), "{rendered}");
}
