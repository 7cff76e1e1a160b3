//! Versions of this binary and what it does when the cluster is past them:
//! the release version (`CARGO_PKG_VERSION`), the highest cluster version
//! it supports (`tally_ledger::MAX_CLUSTER_VERSION`, or lower with the
//! hidden `--max-cluster-version` test flag, which makes the binary behave
//! like an older release), and the stop of a node that meets an active
//! cluster version it does not support: it logs why and exits with
//! [`EXIT_UNSUPPORTED_CLUSTER_VERSION`] before applying anything under
//! rules it does not have (never diverges). Both versions are reported in
//! `GetNodeStatus`; the leader raises the active version (`SetClusterVersion`,
//! `tallyctl cluster finalize`) only when every member supports it.

use std::sync::atomic::{AtomicU32, Ordering};

use tally_ledger::{BASE_CLUSTER_VERSION, MAX_CLUSTER_VERSION};

/// This binary's release version.
pub const RELEASE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Exit code of a node that stopped on a cluster version it does not
/// support (`EX_CONFIG`): restarting the same binary cannot help.
pub const EXIT_UNSUPPORTED_CLUSTER_VERSION: i32 = 78;

/// The supported maximum in force (set once at start).
static SUPPORTED: AtomicU32 = AtomicU32::new(MAX_CLUSTER_VERSION);

/// Sets the highest cluster version this node claims to support:
/// `limit` clamped to `BASE_CLUSTER_VERSION..=MAX_CLUSTER_VERSION`.
pub fn limit_supported(limit: Option<u32>) {
    let v = limit
        .unwrap_or(MAX_CLUSTER_VERSION)
        .clamp(BASE_CLUSTER_VERSION, MAX_CLUSTER_VERSION);
    SUPPORTED.store(v, Ordering::Relaxed);
}

/// The highest cluster version this node supports.
pub fn max_supported() -> u32 {
    SUPPORTED.load(Ordering::Relaxed)
}

/// What a node says when the cluster runs at a version it does not support.
pub fn unsupported_message(active: u32) -> String {
    format!(
        "the cluster's active version is {active}, but this binary (release {RELEASE_VERSION}) \
         supports cluster versions up to {}: run a release that supports version {active} on \
         this node (a finalized cluster cannot be downgraded)",
        max_supported()
    )
}

/// Stops the process: the cluster runs at `active`, which this binary does
/// not support. Called before anything of the entry or snapshot is applied.
pub fn stop_unsupported(active: u32, at: &str) -> ! {
    let message = unsupported_message(active);
    tracing::error!(
        node_id = crate::metrics::node_id(),
        active,
        supported = max_supported(),
        "{at}: {message}; stopping without applying it"
    );
    eprintln!("error: {at}: {message}");
    std::process::exit(EXIT_UNSUPPORTED_CLUSTER_VERSION)
}
