//! The `[upstream_tls]` and `[downstream_tls]` sections.

use super::Passphrase;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTlsConfig {
    /// CA bundle; `None` means the system roots.
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub passphrase: Option<Passphrase>,
    /// Overrides the name used for SNI and verification.
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamTlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub passphrase: Option<Passphrase>,
    /// Require client certificates signed by this bundle.
    pub client_ca_file: Option<PathBuf>,
    /// Client CN or SAN DNS names allowed in (exact or `*` patterns).
    pub allowed_subjects: Vec<String>,
    /// Which part of a verified client certificate names the principal.
    pub principal: Option<PrincipalFrom>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileUpstreamTls {
    pub enabled: Option<bool>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub key_passphrase_file: Option<PathBuf>,
    pub key_passphrase_env: Option<String>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileDownstreamTls {
    pub enabled: Option<bool>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub key_passphrase_file: Option<PathBuf>,
    pub key_passphrase_env: Option<String>,
    pub client_ca_file: Option<PathBuf>,
    pub allowed_subjects: Option<Vec<String>>,
    pub principal: Option<String>,
}

fn passphrase(
    section: &str,
    file: &Option<PathBuf>,
    env: &Option<String>,
) -> Result<Option<Passphrase>, String> {
    match (file, env) {
        (Some(_), Some(_)) => Err(format!(
            "keys `{section}.key_passphrase_file` and `{section}.key_passphrase_env`: set only one"
        )),
        (Some(f), None) => Ok(Some(Passphrase::File(f.clone()))),
        (None, Some(e)) => Ok(Some(Passphrase::Env(e.clone()))),
        (None, None) => Ok(None),
    }
}

fn exists(key: &str, p: &Option<PathBuf>) -> Result<(), String> {
    match p {
        Some(p) if !p.exists() => Err(format!(
            "key `{key}`: {} does not exist; expected a readable PEM file",
            p.display()
        )),
        _ => Ok(()),
    }
}

pub fn upstream(f: FileUpstreamTls) -> Result<Option<UpstreamTlsConfig>, String> {
    if !f.enabled.unwrap_or(false) {
        return Ok(None);
    }
    let s = "upstream_tls";
    exists(&format!("{s}.ca_file"), &f.ca_file)?;
    exists(&format!("{s}.cert_file"), &f.cert_file)?;
    exists(&format!("{s}.key_file"), &f.key_file)?;
    if f.cert_file.is_some() != f.key_file.is_some() {
        return Err(format!(
            "keys `{s}.cert_file` and `{s}.key_file`: set both for mTLS, or neither"
        ));
    }
    Ok(Some(UpstreamTlsConfig {
        passphrase: passphrase(s, &f.key_passphrase_file, &f.key_passphrase_env)?,
        ca_file: f.ca_file,
        cert_file: f.cert_file,
        key_file: f.key_file,
        server_name: f.server_name,
        insecure_skip_verify: f.insecure_skip_verify.unwrap_or(false),
    }))
}

/// The part of a verified client certificate that becomes the principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalFrom {
    /// The subject's first common name.
    Cn,
    /// The first DNS name in the subject alternative names.
    SanDns,
}

fn principal_from(s: &str, f: &FileDownstreamTls) -> Result<Option<PrincipalFrom>, String> {
    let p = match f.principal.as_deref() {
        None => return Ok(None),
        Some("cn") => PrincipalFrom::Cn,
        Some("san_dns") => PrincipalFrom::SanDns,
        Some(other) => {
            return Err(format!(
                "key `{s}.principal`: {other:?} is not one of \"cn\", \"san_dns\""
            ))
        }
    };
    if f.client_ca_file.is_none() {
        return Err(format!(
            "key `{s}.principal`: needs `{s}.client_ca_file` to verify client certificates"
        ));
    }
    Ok(Some(p))
}

pub fn downstream(f: FileDownstreamTls) -> Result<Option<DownstreamTlsConfig>, String> {
    if !f.enabled.unwrap_or(false) {
        return Ok(None);
    }
    let s = "downstream_tls";
    let need = |k: &str, v: Option<PathBuf>| {
        let v = v.ok_or_else(|| {
            format!("key `{s}.{k}`: missing; expected a PEM file path when downstream_tls is enabled")
        })?;
        exists(&format!("{s}.{k}"), &Some(v.clone()))?;
        Ok::<_, String>(v)
    };
    let principal = principal_from(s, &f)?;
    let cert_file = need("cert_file", f.cert_file)?;
    let key_file = need("key_file", f.key_file)?;
    exists(&format!("{s}.client_ca_file"), &f.client_ca_file)?;
    let allowed = f.allowed_subjects.unwrap_or_default();
    if !allowed.is_empty() && f.client_ca_file.is_none() {
        return Err(format!(
            "key `{s}.allowed_subjects`: needs `{s}.client_ca_file` to verify client certificates"
        ));
    }
    Ok(Some(DownstreamTlsConfig {
        principal,
        passphrase: passphrase(s, &f.key_passphrase_file, &f.key_passphrase_env)?,
        cert_file,
        key_file,
        client_ca_file: f.client_ca_file,
        allowed_subjects: allowed,
    }))
}
