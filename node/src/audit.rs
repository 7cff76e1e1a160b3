//! The audit log: one JSON object per line for every admin call (who,
//! what, when, result) and every refused call, appended to a file
//! (default `<data_dir>/audit.log`). Bounded: when the file passes
//! [`MAX_AUDIT_FILE_BYTES`] it is renamed to `audit.log.1` (replacing the
//! previous one) and a new file is started, so at most twice that is kept.
//! A write failure is logged and counted, never fails the call.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Size at which the audit file is rotated: 64 MiB.
pub const MAX_AUDIT_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// One audited call.
#[derive(Debug, serde::Serialize)]
pub struct AuditEntry<'a> {
    pub ts_ms: u64,
    pub node_id: u64,
    /// The caller: certificate name and roles, or why it is anonymous.
    pub who: &'a str,
    pub remote: &'a str,
    /// The gRPC method, `Service/Method`.
    pub what: &'a str,
    /// `OK`, or the gRPC code name.
    pub result: &'a str,
    /// Tally's machine-readable reason, when the call failed with one.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub message: &'a str,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The append-only audit file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// (open file, its size); opened on first write.
    file: Mutex<Option<(std::fs::File, u64)>>,
}

impl AuditLog {
    pub fn new(path: PathBuf) -> AuditLog {
        AuditLog {
            path,
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry (and a `tally audit` log line).
    pub fn write(&self, entry: &AuditEntry<'_>) {
        tracing::info!(
            target: "tally::audit",
            who = entry.who,
            remote = entry.remote,
            what = entry.what,
            result = entry.result,
            reason = entry.reason,
            "audit"
        );
        let Ok(mut line) = serde_json::to_vec(entry) else {
            return;
        };
        line.push(b'\n');
        if let Err(e) = self.append(&line) {
            crate::metrics::METRICS
                .audit_write_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(path = %self.path.display(), error = %e, "cannot write the audit log");
        }
    }

    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let mut guard = match self.file.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard
            .as_ref()
            .is_some_and(|(_, size)| *size >= MAX_AUDIT_FILE_BYTES)
        {
            *guard = None;
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, rotated)?;
        }
        if guard.is_none() {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            let size = file.metadata()?.len();
            *guard = Some((file, size));
        }
        if let Some((file, size)) = guard.as_mut() {
            file.write_all(line)?;
            *size += line.len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_json_lines_appended_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.log"));
        for result in ["OK", "PERMISSION_DENIED"] {
            log.write(&AuditEntry {
                ts_ms: 1,
                node_id: 2,
                who: "ops [admin]",
                remote: "127.0.0.1:9",
                what: "Admin/AddLearner",
                result,
                reason: "",
                message: "",
            });
        }
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["what"], "Admin/AddLearner");
        assert_eq!(lines[1]["result"], "PERMISSION_DENIED");
        assert!(lines[0].get("reason").is_none());
    }
}
