//! Tally's tidy checks: source conventions that rustfmt and clippy cannot
//! express, run over the tree by `scripts/tidy` (the `tally-tidy` binary) and
//! by this crate's tests under `cargo nextest`.
//!
//! Each check is a function from one file's path (for messages) and source
//! to the list of [`Violation`]s it finds, so fixtures test them in memory;
//! [`check_tree`] applies them to the workspace with the scopes below.
//!
//! - `debug-assert-false` (`ledger/src`): no `debug_assert!(false, ..)` in
//!   any spacing, tests included. An invariant that must never break is an
//!   always-on `assert!` or a rejection, never a debug-only assert.
//! - `fn-length` (`ledger/src`): no fn (free, method, trait default, nested)
//!   longer than [`MAX_FN_LINES`] lines from its `fn` line to its closing
//!   brace. Items under `#[cfg(test)]` are skipped. Fns written inside macro
//!   bodies are not seen.
//! - `hash-iteration` (`ledger/src`): no `for _ in` a hash map or set and no
//!   `.into_iter()` on one, unless an enclosing fn, statement or expression
//!   carries `#[allow(clippy::disallowed_methods)]`. Clippy's
//!   `disallowed-methods` (ledger/clippy.toml) bans the named methods
//!   (`iter`, `keys`, `drain`, ...); a `for` loop calls none it can see.
//!   Known hash maps are struct fields typed `HashMap`, `HashSet`,
//!   `FxHashMap`, `FxHashSet` or `HashTable` (matched by field name, any
//!   receiver), and locals or parameters declared with such a type or built
//!   by `FxHashMap::default()` and the like. Not seen: maps reached through
//!   a getter, a type alias of another name, or a tuple-struct field.
//! - `allow-reason` (`ledger/src`): every `#[allow(clippy::disallowed_*)]`
//!   has a `//` comment just above it (or after it on its line) saying why,
//!   and none is crate- or module-wide (`#![allow(..)]`).
//! - `module-doc` (`ledger/src`, `node/src`, `client/src`, `tallyctl/src`):
//!   every `.rs` file starts with a `//!` module doc comment.
//! - `forbid-unsafe`: the crate roots in [`FORBID_UNSAFE_ROOTS`] (the engine's
//!   first) carry `#![forbid(unsafe_code)]`.
//! - `ledger-deps`: `ledger/Cargo.toml` has no randomness or async runtime
//!   crate among its (non-dev) dependencies ([`LEDGER_BANNED_DEPS`]).

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::{self, Visit};
use syn::{Attribute, Expr, FnArg, Member, Pat, Type};

/// Longest fn allowed in `ledger/src`, in lines from `fn` to `}`.
pub const MAX_FN_LINES: usize = 100;

/// Crate roots that must carry `#![forbid(unsafe_code)]`: every crate without
/// unsafe code. Not listed: `bench` (libc calls in `bench/src/rss.rs` and
/// `bench/src/cluster.rs`: RSS sampling, signals to its dev nodes),
/// `proto` (generated code; its build script sets an env var unsafely) and
/// `tls` (`deny(unsafe_code)` with one allowed setsockopt in `tls/src/tcp.rs`:
/// the TCP retransmission floor has no safe binding yet).
pub const FORBID_UNSAFE_ROOTS: &[&str] = &[
    "ledger/src/lib.rs",
    "node/src/lib.rs",
    "node/src/main.rs",
    "client/src/lib.rs",
    "tallyctl/src/main.rs",
    "jepsen/src/lib.rs",
    "tests/src/lib.rs",
    "tidy/src/lib.rs",
    "tidy/src/main.rs",
];

/// Type names treated as hash maps or sets (last path segment).
pub const HASH_TYPES: &[&str] = &[
    "HashMap",
    "HashSet",
    "FxHashMap",
    "FxHashSet",
    "HashTable",
    "AHashMap",
    "AHashSet",
];

/// Crates the engine must not depend on (key or `package = ..`).
pub const LEDGER_BANNED_DEPS: &[&str] = &[
    "rand",
    "rand_core",
    "rand_chacha",
    "rand_pcg",
    "rand_xoshiro",
    "getrandom",
    "fastrand",
    "tokio",
    "async-std",
];

pub const DEBUG_ASSERT_FALSE: &str = "debug-assert-false";
pub const FN_LENGTH: &str = "fn-length";
pub const HASH_ITERATION: &str = "hash-iteration";
pub const ALLOW_REASON: &str = "allow-reason";
pub const MODULE_DOC: &str = "module-doc";
pub const FORBID_UNSAFE: &str = "forbid-unsafe";
pub const LEDGER_DEPS: &str = "ledger-deps";
pub const PARSE: &str = "parse";

/// One broken convention: where, which check, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    pub file: String,
    pub line: usize,
    pub check: &'static str,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: [{}] {}",
            self.file, self.line, self.check, self.message
        )
    }
}

fn violation(file: &str, line: usize, check: &'static str, message: String) -> Violation {
    Violation {
        file: file.to_string(),
        line,
        check,
        message,
    }
}

/// How to fix a violation of `check` (printed once per failing check).
pub fn fix_hint(check: &str) -> &'static str {
    match check {
        DEBUG_ASSERT_FALSE => {
            "make the invariant an always-on `assert!(..)`, or return a rejection; never a debug-only assert"
        }
        FN_LENGTH => "split the fn into named steps (max 100 lines from `fn` to its closing brace)",
        HASH_ITERATION => {
            "iterate a sorted copy or a BTreeMap; if order provably cannot leak, put `#[allow(clippy::disallowed_methods)]` on the loop with a `//` comment saying why"
        }
        ALLOW_REASON => {
            "put a one-line `//` comment above the allow saying why order (or the banned call) cannot leak; no crate- or module-wide allows"
        }
        MODULE_DOC => "start the file with a `//!` comment saying what the module is for",
        FORBID_UNSAFE => "add `#![forbid(unsafe_code)]` after the crate's `//!` docs",
        LEDGER_DEPS => "remove the dependency: tally-ledger stays pure and deterministic",
        _ => "fix the file so that it parses",
    }
}

fn parse_file(file: &str, src: &str) -> Result<syn::File, Violation> {
    syn::parse_file(src).map_err(|e| {
        violation(
            file,
            e.span().start().line,
            PARSE,
            format!("cannot parse: {e}"),
        )
    })
}

// ---------------------------------------------------------------- debug-assert-false

/// `debug_assert!(false ..)` in any spacing or delimiter, tests and macro
/// bodies included (comments and doc text are not code and are skipped).
pub fn check_debug_assert_false(file: &str, src: &str) -> Vec<Violation> {
    let tokens: TokenStream = match src.parse() {
        Ok(tokens) => tokens,
        Err(e) => {
            return vec![violation(
                file,
                e.span().start().line,
                PARSE,
                format!("cannot tokenize: {e}"),
            )];
        }
    };
    let mut out = Vec::new();
    scan_debug_assert_false(file, tokens, &mut out);
    out
}

fn scan_debug_assert_false(file: &str, tokens: TokenStream, out: &mut Vec<Violation>) {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, tree) in trees.iter().enumerate() {
        match tree {
            TokenTree::Ident(ident) if ident == "debug_assert" => {
                let (Some(TokenTree::Punct(bang)), Some(TokenTree::Group(args))) =
                    (trees.get(i + 1), trees.get(i + 2))
                else {
                    continue;
                };
                let first = args.stream().into_iter().next();
                if bang.as_char() == '!'
                    && matches!(&first, Some(TokenTree::Ident(f)) if f == "false")
                {
                    out.push(violation(
                        file,
                        ident.span().start().line,
                        DEBUG_ASSERT_FALSE,
                        "`debug_assert!(false, ..)` checks nothing in release builds: an invariant that \
                         must never break is an always-on `assert!`, or a rejection"
                            .to_string(),
                    ));
                }
            }
            TokenTree::Group(group) => scan_debug_assert_false(file, group.stream(), out),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------- fn-length

/// Fns longer than `max` lines, from the `fn` line to the closing brace.
pub fn check_fn_length(file: &str, src: &str, max: usize) -> Vec<Violation> {
    let ast = match parse_file(file, src) {
        Ok(ast) => ast,
        Err(v) => return vec![v],
    };
    let mut visitor = FnLength {
        file,
        max,
        out: Vec::new(),
    };
    visitor.visit_file(&ast);
    visitor.out
}

/// Whether `attrs` hold `#[cfg(test)]` or `#[cfg(all(.., test, ..))]`.
pub fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        let Ok(list) = attr.meta.require_list() else {
            return false;
        };
        if !attr.path().is_ident("cfg") {
            return false;
        }
        let trees: Vec<TokenTree> = list.tokens.clone().into_iter().collect();
        match trees.as_slice() {
            [TokenTree::Ident(test)] => test == "test",
            [TokenTree::Ident(all), TokenTree::Group(args)] if all == "all" => args
                .stream()
                .into_iter()
                .any(|t| matches!(&t, TokenTree::Ident(i) if i == "test")),
            _ => false,
        }
    })
}

struct FnLength<'a> {
    file: &'a str,
    max: usize,
    out: Vec<Violation>,
}

impl FnLength<'_> {
    fn measure(&mut self, sig: &syn::Signature, block: &syn::Block) {
        let start = sig.fn_token.span.start().line;
        let end = block.brace_token.span.close().start().line;
        let lines = end + 1 - start;
        if lines > self.max {
            self.out.push(violation(
                self.file,
                start,
                FN_LENGTH,
                format!(
                    "fn `{}` is {lines} lines (from `fn` to its closing brace; max {})",
                    sig.ident, self.max
                ),
            ));
        }
    }
}

impl<'ast> Visit<'ast> for FnLength<'_> {
    fn visit_item_mod(&mut self, node: &'ast syn::ItemMod) {
        if !is_cfg_test(&node.attrs) {
            visit::visit_item_mod(self, node);
        }
    }

    fn visit_item_impl(&mut self, node: &'ast syn::ItemImpl) {
        if !is_cfg_test(&node.attrs) {
            visit::visit_item_impl(self, node);
        }
    }

    fn visit_item_fn(&mut self, node: &'ast syn::ItemFn) {
        if !is_cfg_test(&node.attrs) {
            self.measure(&node.sig, &node.block);
            visit::visit_item_fn(self, node);
        }
    }

    fn visit_impl_item_fn(&mut self, node: &'ast syn::ImplItemFn) {
        if !is_cfg_test(&node.attrs) {
            self.measure(&node.sig, &node.block);
            visit::visit_impl_item_fn(self, node);
        }
    }

    fn visit_trait_item_fn(&mut self, node: &'ast syn::TraitItemFn) {
        if is_cfg_test(&node.attrs) {
            return;
        }
        if let Some(block) = &node.default {
            self.measure(&node.sig, block);
        }
        visit::visit_trait_item_fn(self, node);
    }
}

// ---------------------------------------------------------------- hash-iteration

/// Whether `ty` (behind references) is one of [`HASH_TYPES`].
pub fn is_hash_type(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|s| HASH_TYPES.iter().any(|h| s.ident == h)),
        Type::Reference(reference) => is_hash_type(&reference.elem),
        Type::Paren(paren) => is_hash_type(&paren.elem),
        Type::Group(group) => is_hash_type(&group.elem),
        _ => false,
    }
}

/// The named fields of the structs (and enum variants) of a set of files:
/// which are hash maps or sets, per struct and by name over all structs.
#[derive(Clone, Debug, Default)]
pub struct HashFields {
    /// Every struct, to the names of its hash-typed fields.
    pub by_struct: BTreeMap<String, BTreeSet<String>>,
    /// Field names typed as a hash map or set in some struct or variant.
    pub hashed: BTreeSet<String>,
    /// Field names typed otherwise in some struct or variant.
    pub other: BTreeSet<String>,
}

impl HashFields {
    /// Adds the fields declared in `src`.
    pub fn add_file(&mut self, file: &str, src: &str) -> Result<(), Violation> {
        struct Fields<'a> {
            fields: &'a mut HashFields,
            owner: Option<String>,
        }
        impl<'ast> Visit<'ast> for Fields<'_> {
            fn visit_item_struct(&mut self, node: &'ast syn::ItemStruct) {
                let name = node.ident.to_string();
                self.fields.by_struct.entry(name.clone()).or_default();
                let outer = self.owner.replace(name);
                visit::visit_item_struct(self, node);
                self.owner = outer;
            }
            fn visit_item_enum(&mut self, node: &'ast syn::ItemEnum) {
                let outer = self.owner.take();
                visit::visit_item_enum(self, node);
                self.owner = outer;
            }
            fn visit_field(&mut self, node: &'ast syn::Field) {
                if let Some(ident) = &node.ident {
                    let name = ident.to_string();
                    if is_hash_type(&node.ty) {
                        if let Some(owner) = &self.owner {
                            let set = self.fields.by_struct.entry(owner.clone()).or_default();
                            set.insert(name.clone());
                        }
                        self.fields.hashed.insert(name);
                    } else {
                        self.fields.other.insert(name);
                    }
                }
                visit::visit_field(self, node);
            }
        }
        let ast = parse_file(file, src)?;
        Fields {
            fields: self,
            owner: None,
        }
        .visit_file(&ast);
        Ok(())
    }

    /// The fields declared in `src` alone (for fixtures).
    pub fn of(src: &str) -> Result<HashFields, Violation> {
        let mut fields = HashFields::default();
        fields.add_file("<fixture>", src)?;
        Ok(fields)
    }

    /// Whether field `name` of a value of type `ty` is a hash map or set.
    /// Of a type that is not a known struct: whether some struct has a
    /// hash-typed field `name` and none has a field `name` of another type.
    fn is_hash_field(&self, ty: Option<&str>, name: &str) -> bool {
        match ty.and_then(|ty| self.by_struct.get(ty)) {
            Some(fields) => fields.contains(name),
            None => self.hashed.contains(name) && !self.other.contains(name),
        }
    }
}

/// `for` loops over, and `.into_iter()` calls on, known hash maps or sets
/// outside an `#[allow(clippy::disallowed_methods)]`: fields that are hash
/// maps in `fields` (the receiver's type is taken from `self` in an impl, a
/// typed parameter or let, or a `Type::new(..)`-style initializer), and
/// hash-typed locals and parameters.
pub fn check_hash_iteration(file: &str, src: &str, fields: &HashFields) -> Vec<Violation> {
    let ast = match parse_file(file, src) {
        Ok(ast) => ast,
        Err(v) => return vec![v],
    };
    let mut visitor = HashIteration {
        file,
        fields,
        self_ty: Vec::new(),
        locals: vec![BTreeMap::new()],
        allowed: 0,
        out: Vec::new(),
    };
    visitor.visit_file(&ast);
    visitor.out
}

/// Whether `attrs` allow (or expect) `clippy::disallowed_methods`.
pub fn allows_disallowed_methods(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        (attr.path().is_ident("allow") || attr.path().is_ident("expect"))
            && attr.meta.require_list().is_ok_and(|list| {
                let text: String = list
                    .tokens
                    .to_string()
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                text.split(',')
                    .any(|lint| lint == "clippy::disallowed_methods")
            })
    })
}

fn expr_attrs(expr: &Expr) -> &[Attribute] {
    match expr {
        Expr::ForLoop(e) => &e.attrs,
        Expr::MethodCall(e) => &e.attrs,
        Expr::Call(e) => &e.attrs,
        Expr::Block(e) => &e.attrs,
        Expr::Assign(e) => &e.attrs,
        Expr::Closure(e) => &e.attrs,
        Expr::If(e) => &e.attrs,
        Expr::Match(e) => &e.attrs,
        Expr::Loop(e) => &e.attrs,
        Expr::While(e) => &e.attrs,
        Expr::Macro(e) => &e.attrs,
        _ => &[],
    }
}

/// What a local or parameter is known to be.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Known {
    Hash,
    /// A value of (or reference to) the named type.
    Type(String),
    Unknown,
}

/// The last path segment of `ty`, behind references.
fn type_name(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(path) => path.path.segments.last().map(|s| s.ident.to_string()),
        Type::Reference(reference) => type_name(&reference.elem),
        Type::Paren(paren) => type_name(&paren.elem),
        Type::Group(group) => type_name(&group.elem),
        _ => None,
    }
}

fn known_of_type(ty: &Type, self_ty: Option<&str>) -> Known {
    if is_hash_type(ty) {
        return Known::Hash;
    }
    match type_name(ty) {
        Some(name) if name == "Self" => self_ty.map_or(Known::Unknown, |t| Known::Type(t.into())),
        Some(name) => Known::Type(name),
        None => Known::Unknown,
    }
}

/// What an initializer builds: a hash map or set (`FxHashMap::default()`,
/// `HashSet::with_capacity(..)`, `.collect::<FxHashSet<_>>()`), or a value
/// of a named type (`Ledger::empty(..)`, `Parsed { .. }`).
fn known_of_init(expr: &Expr, self_ty: Option<&str>) -> Known {
    let named = |name: String| {
        if HASH_TYPES.contains(&name.as_str()) {
            Known::Hash
        } else if name == "Self" {
            self_ty.map_or(Known::Unknown, |t| Known::Type(t.into()))
        } else {
            Known::Type(name)
        }
    };
    match expr {
        Expr::Call(call) => match &*call.func {
            Expr::Path(path) if path.path.segments.len() >= 2 => {
                let segments = &path.path.segments;
                if segments
                    .iter()
                    .any(|s| HASH_TYPES.iter().any(|h| s.ident == h))
                {
                    Known::Hash
                } else {
                    named(segments[segments.len() - 2].ident.to_string())
                }
            }
            _ => Known::Unknown,
        },
        Expr::Struct(lit) => lit
            .path
            .segments
            .last()
            .map_or(Known::Unknown, |s| named(s.ident.to_string())),
        Expr::MethodCall(call) => {
            let hash = call.turbofish.as_ref().is_some_and(|turbofish| {
                turbofish.args.iter().any(|arg| match arg {
                    syn::GenericArgument::Type(ty) => is_hash_type(ty),
                    _ => false,
                })
            });
            if hash { Known::Hash } else { Known::Unknown }
        }
        _ => Known::Unknown,
    }
}

struct HashIteration<'a> {
    file: &'a str,
    fields: &'a HashFields,
    /// The self type of each enclosing impl.
    self_ty: Vec<Option<String>>,
    /// Locals and parameters, one map per enclosing fn.
    locals: Vec<BTreeMap<String, Known>>,
    /// Depth of enclosing `#[allow(clippy::disallowed_methods)]`.
    allowed: usize,
    out: Vec<Violation>,
}

impl HashIteration<'_> {
    fn current_self(&self) -> Option<&str> {
        self.self_ty.last().and_then(|t| t.as_deref())
    }

    fn local(&self, expr: &Expr) -> Option<&Known> {
        let Expr::Path(path) = expr else { return None };
        let ident = path.path.get_ident()?.to_string();
        self.locals.last()?.get(&ident)
    }

    /// The hash map or set `expr` (behind `&`, `&mut`, parens) names, if any.
    fn hash_operand(&self, expr: &Expr) -> Option<String> {
        match expr {
            Expr::Reference(r) => self.hash_operand(&r.expr),
            Expr::Paren(p) => self.hash_operand(&p.expr),
            Expr::Group(g) => self.hash_operand(&g.expr),
            Expr::Field(field) => {
                let Member::Named(name) = &field.member else {
                    return None;
                };
                let receiver_ty = match &*field.base {
                    Expr::Path(path) if path.path.is_ident("self") => {
                        self.current_self().map(str::to_string)
                    }
                    base => match self.local(base) {
                        Some(Known::Type(ty)) => Some(ty.clone()),
                        _ => None,
                    },
                };
                self.fields
                    .is_hash_field(receiver_ty.as_deref(), &name.to_string())
                    .then(|| format!("field `{name}`"))
            }
            Expr::Path(path) => match self.local(expr) {
                Some(Known::Hash) => Some(format!("`{}`", path.path.get_ident()?)),
                _ => None,
            },
            _ => None,
        }
    }

    fn flag(&mut self, line: usize, message: String) {
        if self.allowed == 0 {
            self.out
                .push(violation(self.file, line, HASH_ITERATION, message));
        }
    }

    fn in_fn(&mut self, attrs: &[Attribute], sig: &syn::Signature, body: impl FnOnce(&mut Self)) {
        let mut locals = BTreeMap::new();
        for input in &sig.inputs {
            if let FnArg::Typed(arg) = input
                && let Pat::Ident(ident) = &*arg.pat
            {
                let known = known_of_type(&arg.ty, self.current_self());
                locals.insert(ident.ident.to_string(), known);
            }
        }
        self.locals.push(locals);
        self.scoped(attrs, body);
        self.locals.pop();
    }

    fn scoped(&mut self, attrs: &[Attribute], body: impl FnOnce(&mut Self)) {
        let allow = allows_disallowed_methods(attrs);
        self.allowed += usize::from(allow);
        body(self);
        self.allowed -= usize::from(allow);
    }
}

impl<'ast> Visit<'ast> for HashIteration<'_> {
    fn visit_item_fn(&mut self, node: &'ast syn::ItemFn) {
        self.in_fn(&node.attrs, &node.sig, |v| visit::visit_item_fn(v, node));
    }

    fn visit_impl_item_fn(&mut self, node: &'ast syn::ImplItemFn) {
        self.in_fn(&node.attrs, &node.sig, |v| {
            visit::visit_impl_item_fn(v, node)
        });
    }

    fn visit_trait_item_fn(&mut self, node: &'ast syn::TraitItemFn) {
        self.in_fn(&node.attrs, &node.sig, |v| {
            visit::visit_trait_item_fn(v, node)
        });
    }

    fn visit_item_impl(&mut self, node: &'ast syn::ItemImpl) {
        self.self_ty.push(type_name(&node.self_ty));
        self.scoped(&node.attrs, |v| visit::visit_item_impl(v, node));
        self.self_ty.pop();
    }

    fn visit_item_mod(&mut self, node: &'ast syn::ItemMod) {
        self.scoped(&node.attrs, |v| visit::visit_item_mod(v, node));
    }

    fn visit_item_trait(&mut self, node: &'ast syn::ItemTrait) {
        self.self_ty.push(None);
        self.scoped(&node.attrs, |v| visit::visit_item_trait(v, node));
        self.self_ty.pop();
    }

    fn visit_local(&mut self, node: &'ast syn::Local) {
        let self_ty = self.current_self();
        let (name, annotated) = match &node.pat {
            Pat::Type(typed) => match &*typed.pat {
                Pat::Ident(ident) => (
                    Some(ident.ident.to_string()),
                    known_of_type(&typed.ty, self_ty),
                ),
                _ => (None, Known::Unknown),
            },
            Pat::Ident(ident) => (Some(ident.ident.to_string()), Known::Unknown),
            _ => (None, Known::Unknown),
        };
        let known = match (annotated, &node.init) {
            (Known::Unknown, Some(init)) => known_of_init(&init.expr, self_ty),
            (known, _) => known,
        };
        // Visit the initializer before the binding shadows a name in it.
        self.scoped(&node.attrs, |v| visit::visit_local(v, node));
        if let Some(name) = name
            && let Some(locals) = self.locals.last_mut()
        {
            locals.insert(name, known);
        }
    }

    fn visit_expr(&mut self, node: &'ast Expr) {
        self.scoped(expr_attrs(node), |v| visit::visit_expr(v, node));
    }

    fn visit_expr_for_loop(&mut self, node: &'ast syn::ExprForLoop) {
        if let Some(name) = self.hash_operand(&node.expr) {
            self.flag(
                node.for_token.span.start().line,
                format!(
                    "`for` over hash map/set {name} visits entries in hash order, which must not reach \
                     output, a record or a hash"
                ),
            );
        }
        visit::visit_expr_for_loop(self, node);
    }

    fn visit_expr_method_call(&mut self, node: &'ast syn::ExprMethodCall) {
        if node.method == "into_iter"
            && let Some(name) = self.hash_operand(&node.receiver)
        {
            self.flag(
                node.method.span().start().line,
                format!(
                    "`.into_iter()` on hash map/set {name} visits entries in hash order, which must \
                     not reach output, a record or a hash"
                ),
            );
        }
        visit::visit_expr_method_call(self, node);
    }
}

// ---------------------------------------------------------------- allow-reason

/// Every `allow`/`expect` of `clippy::disallowed_methods` or
/// `clippy::disallowed_types` needs a `//` comment (not a doc comment) on
/// the line above (other attributes in between are skipped) or after it on
/// its own line; an inner `#![allow(..)]` of them is refused outright.
pub fn check_allow_reason(file: &str, src: &str) -> Vec<Violation> {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        let is_attr = code.starts_with("#[") || code.starts_with("#![");
        let lints_banned = code.contains("clippy::disallowed_methods")
            || code.contains("clippy::disallowed_types");
        if !is_attr || !lints_banned {
            continue;
        }
        if code.starts_with("#![") {
            out.push(violation(
                file,
                i + 1,
                ALLOW_REASON,
                "crate- or module-wide allow of clippy::disallowed_* switches the engine rules off: \
                 allow the one expression or fn"
                    .to_string(),
            ));
            continue;
        }
        if code
            .find("//")
            .is_some_and(|at| at > code.find(']').unwrap_or(usize::MAX))
        {
            continue;
        }
        let above = lines[..i]
            .iter()
            .rev()
            .map(|l| l.trim_start())
            .find(|l| !l.starts_with("#["));
        let commented = above
            .is_some_and(|l| l.starts_with("//") && !l.starts_with("///") && !l.starts_with("//!"));
        if !commented {
            out.push(violation(
                file,
                i + 1,
                ALLOW_REASON,
                "allow of clippy::disallowed_* without a `//` comment on the line above saying why \
                 order (or the banned call) cannot leak"
                    .to_string(),
            ));
        }
    }
    out
}

// ---------------------------------------------------------------- module-doc

/// The first non-blank line must be a `//!` module doc comment.
pub fn check_module_doc(file: &str, src: &str) -> Vec<Violation> {
    let first = src.lines().enumerate().find(|(_, l)| !l.trim().is_empty());
    match first {
        Some((_, line)) if line.trim_start().starts_with("//!") => Vec::new(),
        first => vec![violation(
            file,
            first.map_or(1, |(i, _)| i + 1),
            MODULE_DOC,
            "file does not start with a `//!` module doc comment".to_string(),
        )],
    }
}

// ---------------------------------------------------------------- forbid-unsafe

/// The crate root `src` must carry `#![forbid(unsafe_code)]`.
pub fn check_forbid_unsafe(file: &str, src: &str) -> Vec<Violation> {
    let ast = match parse_file(file, src) {
        Ok(ast) => ast,
        Err(v) => return vec![v],
    };
    let forbids = ast.attrs.iter().any(|attr| {
        matches!(attr.style, syn::AttrStyle::Inner(_))
            && attr.path().is_ident("forbid")
            && attr.meta.require_list().is_ok_and(|list| {
                list.tokens
                    .clone()
                    .into_iter()
                    .any(|t| matches!(&t, TokenTree::Ident(i) if i == "unsafe_code"))
            })
    });
    if forbids {
        Vec::new()
    } else {
        vec![violation(
            file,
            1,
            FORBID_UNSAFE,
            "crate root lacks `#![forbid(unsafe_code)]`".to_string(),
        )]
    }
}

// ---------------------------------------------------------------- ledger-deps

/// `[dependencies]` (and `[target.*.dependencies]`) of the engine's
/// Cargo.toml must not name a crate in [`LEDGER_BANNED_DEPS`].
pub fn check_ledger_deps(file: &str, cargo_toml: &str) -> Vec<Violation> {
    let manifest: toml::Table = match cargo_toml.parse() {
        Ok(manifest) => manifest,
        Err(e) => return vec![violation(file, 1, PARSE, format!("cannot parse: {e}"))],
    };
    let mut tables: Vec<&toml::Table> = Vec::new();
    if let Some(deps) = manifest.get("dependencies").and_then(|d| d.as_table()) {
        tables.push(deps);
    }
    if let Some(targets) = manifest.get("target").and_then(|t| t.as_table()) {
        for target in targets.values() {
            if let Some(deps) = target.get("dependencies").and_then(|d| d.as_table()) {
                tables.push(deps);
            }
        }
    }
    let mut out = Vec::new();
    for (key, spec) in tables.into_iter().flatten() {
        let package = spec.get("package").and_then(|p| p.as_str()).unwrap_or(key);
        if LEDGER_BANNED_DEPS.contains(&package) {
            let line = cargo_toml
                .lines()
                .position(|l| {
                    l.trim_start()
                        .strip_prefix(key.as_str())
                        .is_some_and(|rest| rest.starts_with([' ', '.', '=']))
                })
                .map_or(1, |i| i + 1);
            out.push(violation(
                file,
                line,
                LEDGER_DEPS,
                format!("tally-ledger depends on `{package}` (randomness or async I/O)"),
            ));
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------- the tree

/// What [`check_tree`] found.
#[derive(Debug, Default)]
pub struct Report {
    pub files_checked: usize,
    pub violations: Vec<Violation>,
}

/// Every `.rs` file under `dir`, sorted.
pub fn rust_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

struct Source {
    name: String,
    text: String,
}

fn read_sources(root: &Path, dir: &str, report: &mut Report) -> Vec<Source> {
    let files = match rust_files(&root.join(dir)) {
        Ok(files) => files,
        Err(e) => {
            report
                .violations
                .push(violation(dir, 1, PARSE, format!("cannot list: {e}")));
            return Vec::new();
        }
    };
    let mut sources = Vec::new();
    for path in files {
        let name = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push(Source { name, text }),
            Err(e) => {
                report
                    .violations
                    .push(violation(&name, 1, PARSE, format!("cannot read: {e}")))
            }
        }
    }
    report.files_checked += sources.len();
    sources
}

/// Runs every check over the workspace at `root` with the scopes in the
/// crate docs. Violations come sorted by file and line.
pub fn check_tree(root: &Path) -> Report {
    let mut report = Report::default();
    let ledger = read_sources(root, "ledger/src", &mut report);
    let mut fields = HashFields::default();
    for source in &ledger {
        if let Err(v) = fields.add_file(&source.name, &source.text) {
            report.violations.push(v);
        }
    }
    for source in &ledger {
        let (name, text) = (source.name.as_str(), source.text.as_str());
        report
            .violations
            .extend(check_debug_assert_false(name, text));
        report
            .violations
            .extend(check_fn_length(name, text, MAX_FN_LINES));
        report
            .violations
            .extend(check_hash_iteration(name, text, &fields));
        report.violations.extend(check_allow_reason(name, text));
        report.violations.extend(check_module_doc(name, text));
    }
    for dir in ["node/src", "client/src", "tallyctl/src"] {
        for source in read_sources(root, dir, &mut report) {
            report
                .violations
                .extend(check_module_doc(&source.name, &source.text));
        }
    }
    for file in FORBID_UNSAFE_ROOTS {
        match std::fs::read_to_string(root.join(file)) {
            Ok(text) => report.violations.extend(check_forbid_unsafe(file, &text)),
            Err(e) => {
                report
                    .violations
                    .push(violation(file, 1, PARSE, format!("cannot read: {e}")))
            }
        }
    }
    let manifest = "ledger/Cargo.toml";
    match std::fs::read_to_string(root.join(manifest)) {
        Ok(text) => report.violations.extend(check_ledger_deps(manifest, &text)),
        Err(e) => {
            report
                .violations
                .push(violation(manifest, 1, PARSE, format!("cannot read: {e}")))
        }
    }
    report.violations.sort();
    report.violations.dedup();
    report
}

/// The workspace root (`tidy/..`): from `CARGO_MANIFEST_DIR` as cargo sets
/// it for tests and `cargo run`, else where this crate was built (a target
/// dir shared between checkouts may hold a build from another one).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .expect("tidy/ has a parent")
        .to_path_buf()
}

/// The report as printed by the binary and the tree test: one line per
/// violation, then how to fix each failing check.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for v in &report.violations {
        out.push_str(&format!("{v}\n"));
    }
    let checks: BTreeSet<&str> = report.violations.iter().map(|v| v.check).collect();
    if !checks.is_empty() {
        out.push_str(&format!(
            "tidy: {} violation(s) in {} file(s) checked\n",
            report.violations.len(),
            report.files_checked
        ));
        for check in checks {
            out.push_str(&format!("  fix [{check}]: {}\n", fix_hint(check)));
        }
    }
    out
}
