//! Reads PEM certificate chains, private keys and CA bundles. A passphrase
//! comes from a file or an environment variable, never a flag, and is never
//! logged.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::RootCertStore;
use std::path::{Path, PathBuf};

/// Where a key's passphrase comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passphrase {
    File(PathBuf),
    Env(String),
}

impl Passphrase {
    fn read(&self) -> Result<String, String> {
        match self {
            Passphrase::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| format!("cannot read passphrase file {}: {e}", p.display())),
            Passphrase::Env(v) => {
                std::env::var(v).map_err(|_| format!("passphrase environment variable {v} is not set"))
            }
        }
    }
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no CERTIFICATE block", path.display()));
    }
    Ok(certs)
}

/// Loads a private key; an `ENCRYPTED PRIVATE KEY` needs `passphrase`.
pub fn load_key(path: &Path, passphrase: Option<&Passphrase>) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read key {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let pass = passphrase
            .ok_or_else(|| {
                format!(
                    "{} is encrypted: set key_passphrase_file or key_passphrase_env",
                    path.display()
                )
            })?
            .read()?;
        let (label, der) =
            pkcs8::der::pem::decode_vec(&bytes).map_err(|e| format!("bad PEM in {}: {e}", path.display()))?;
        if label != "ENCRYPTED PRIVATE KEY" {
            return Err(format!(
                "{}: expected one ENCRYPTED PRIVATE KEY block, found {label}",
                path.display()
            ));
        }
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice())
            .map_err(|e| format!("{}: not an encrypted PKCS#8 key: {e}", path.display()))?;
        let doc = info.decrypt(pass.as_bytes()).map_err(|_| {
            format!(
                "cannot decrypt {}: wrong passphrase or unsupported cipher",
                path.display()
            )
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            doc.as_bytes().to_vec(),
        )));
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        format!(
            "{}: no usable private key ({e}); expected PKCS#8, PKCS#1 (RSA), SEC1 (EC) or encrypted PKCS#8 PEM",
            path.display()
        )
    })
}

/// A CA bundle from a PEM file, or the system's roots.
pub fn load_roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(p) => {
            for c in load_certs(p)? {
                roots
                    .add(c)
                    .map_err(|e| format!("{}: unusable CA certificate: {e}", p.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err("no system CA certificates found; set ca_file".into());
            }
        }
    }
    Ok(roots)
}

/// Loads a certificate chain and its key and checks that they pair: the
/// key is one rustls can sign with, and its public key is the one in the
/// first (end-entity) certificate.
pub fn check_pair(cert: &Path, key: &Path, passphrase: Option<&Passphrase>) -> Result<(), String> {
    let chain = load_certs(cert)?;
    let der = load_key(key, passphrase)?;
    let provider = rustls::crypto::ring::default_provider();
    match rustls::sign::CertifiedKey::from_der(chain, der, &provider) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(format!(
            "{} does not belong to the certificate in {}: their public keys differ",
            key.display(),
            cert.display()
        )),
        Err(e) => Err(format!(
            "{} with {}: unusable certificate and key: {e}",
            cert.display(),
            key.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_garbage_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pem");
        assert!(load_certs(&p).unwrap_err().contains("cannot read"));
        std::fs::write(&p, "not pem").unwrap();
        assert!(load_certs(&p).unwrap_err().contains("no CERTIFICATE"));
        let e = load_key(&p, None).unwrap_err();
        assert!(e.contains("PKCS#8") && e.contains("x.pem"), "{e}");
        std::fs::write(
            &p,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(load_key(&p, None).unwrap_err().contains("key_passphrase"));
        let e = load_key(&p, Some(&Passphrase::Env("KGATE_TEST_NO_SUCH_VAR".into()))).unwrap_err();
        assert!(e.contains("KGATE_TEST_NO_SUCH_VAR"), "{e}");
    }
}
