//! Convergence: after every fault is healed, every member node must report
//! the same state hash at the same applied index.

use crate::checker::Verdict;

/// One node's final report: its state hash and applied index, or why it could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeHash {
    /// Node name (e.g. `n3 (id 7)`).
    pub node: String,
    /// `(state_hash, applied_index)` or the error.
    pub hash: Result<(String, u64), String>,
}

/// Valid iff every node answered and all answers are equal.
pub fn check(nodes: &[NodeHash]) -> Verdict {
    if nodes.is_empty() {
        return Verdict::Unknown("no nodes".to_string());
    }
    let lines: Vec<String> = nodes
        .iter()
        .map(|n| match &n.hash {
            Ok((h, i)) => format!("{} {} @{}", n.node, short(h), i),
            Err(e) => format!("{} error: {e}", n.node),
        })
        .collect();
    let first = &nodes[0].hash;
    if nodes.iter().any(|n| n.hash.is_err()) {
        return Verdict::Invalid(format!(
            "a node did not answer after healing: {}",
            lines.join(", ")
        ));
    }
    if nodes.iter().all(|n| &n.hash == first) {
        Verdict::Valid(format!("{} nodes agree: {}", nodes.len(), lines.join(", ")))
    } else {
        Verdict::Invalid(format!("nodes diverge: {}", lines.join(", ")))
    }
}

fn short(h: &str) -> &str {
    &h[..h.len().min(16)]
}
