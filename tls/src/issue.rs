//! Certificate generation (rcgen, ECDSA P-256): a cluster CA, node
//! certificates (role `node`, SANs for every name and address peers dial)
//! and client certificates (a name and roles). For `tallyd dev`,
//! `tallyd certs` and tests; production clusters may use any PKI that
//! issues certificates of the same shape (CN = name, O = roles).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::roles::RoleSet;

/// How long certificates issued here are valid.
pub const DEFAULT_VALIDITY_DAYS: i64 = 365;

/// A certificate authority that can issue cluster certificates.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days.max(1));
}

impl CertAuthority {
    /// A new self-signed CA named `name`.
    pub fn generate(name: &str) -> Result<CertAuthority, String> {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, DEFAULT_VALIDITY_DAYS * 10);
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        let key_pem = key.serialize_pem();
        Ok(CertAuthority {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA from its certificate and key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<CertAuthority, String> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| format!("CA key: {e}"))?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| format!("CA certificate: {e}"))?;
        Ok(CertAuthority {
            issuer,
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A certificate for `name` with `roles`, valid for the names and IP
    /// addresses in `sans` (as a server; any holder can be a client).
    pub fn issue(&self, name: &str, roles: RoleSet, sans: &[String]) -> Result<Issued, String> {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::new(sans.to_vec()).map_err(|e| e.to_string())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        if !roles.is_empty() {
            params
                .distinguished_name
                .push(DnType::OrganizationName, roles.to_string());
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, DEFAULT_VALIDITY_DAYS);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The file names of a certificate set in a directory.
pub fn ca_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.pem"), dir.join("ca.key"))
}

/// `<dir>/<name>.pem` and `<dir>/<name>.key`.
pub fn cert_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

/// Writes `text` to `path`, readable by the owner only when `secret`.
fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The CA of `dir` (`ca.pem` + `ca.key`), created there if absent.
pub fn open_or_create_ca(dir: &Path, name: &str) -> Result<(CertAuthority, bool), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (cert, key) = ca_paths(dir);
    if cert.exists() {
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        return Ok((CertAuthority::from_pem(&read(&cert)?, &read(&key)?)?, false));
    }
    let ca = CertAuthority::generate(name)?;
    write_file(&key, ca.key_pem(), true)?;
    write_file(&cert, ca.cert_pem(), false)?;
    Ok((ca, true))
}

/// Issues `name` with `roles` and `sans` and writes `<dir>/<name>.pem|key`.
pub fn write_issued(
    ca: &CertAuthority,
    dir: &Path,
    name: &str,
    roles: RoleSet,
    sans: &[String],
) -> Result<(PathBuf, PathBuf), String> {
    let issued = ca.issue(name, roles, sans)?;
    let (cert, key) = cert_paths(dir, name);
    write_file(&key, &issued.key_pem, true)?;
    write_file(&cert, &issued.cert_pem, false)?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::{Identity, Role};

    #[test]
    fn issued_certificate_names_its_holder_and_roles_and_chains_to_the_ca() {
        let ca = CertAuthority::generate("test CA").unwrap();
        let issued = ca
            .issue(
                "engine-1",
                RoleSet::of(&[Role::Trader, Role::Reader]),
                &["127.0.0.1".into()],
            )
            .unwrap();
        let der = crate::certs_from_pem(issued.cert_pem.as_bytes()).unwrap();
        let id = Identity::from_cert(&der[0]).unwrap();
        assert_eq!(id.name, "engine-1");
        assert_eq!(id.roles, RoleSet::of(&[Role::Trader, Role::Reader]));
        // A CA reloaded from its PEM files issues certificates too.
        let again = CertAuthority::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        assert!(again.issue("x", RoleSet::default(), &[]).is_ok());
    }
}
