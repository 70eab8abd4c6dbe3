//! What `kgate check-config` adds to building the config: the files the
//! config names are read and parsed the way `run` will read them, and each
//! certificate is checked against its key.

use super::Config;
use crate::tls::material::{check_pair, load_roots};

/// Reads every TLS file `c` names: CA bundles parse, and each certificate
/// and key parse and belong together; `[[upstream_identity]]` passwords
/// are there. Errors name the config key. (The client-auth users file and
/// JWKS are read by the `check-config` command itself: their parsers live
/// with the SASL server, not in this leaf.)
pub fn check_material(c: &Config) -> Result<(), String> {
    if let Some(u) = &c.upstream_tls {
        let s = "upstream_tls";
        if let Some(ca) = &u.ca_file {
            load_roots(Some(ca)).map_err(|e| format!("key `{s}.ca_file`: {e}"))?;
        }
        if let (Some(cert), Some(key)) = (&u.cert_file, &u.key_file) {
            check_pair(cert, key, u.passphrase.as_ref())
                .map_err(|e| format!("keys `{s}.cert_file`/`{s}.key_file`: {e}"))?;
        }
    }
    check_identity_secrets(c)?;
    if let Some(d) = &c.downstream_tls {
        let s = "downstream_tls";
        check_pair(&d.cert_file, &d.key_file, d.passphrase.as_ref())
            .map_err(|e| format!("keys `{s}.cert_file`/`{s}.key_file`: {e}"))?;
        if let Some(ca) = &d.client_ca_file {
            load_roots(Some(ca)).map_err(|e| format!("key `{s}.client_ca_file`: {e}"))?;
        }
        if let Some(sni) = &c.sni {
            for w in crate::tls::names::check_sni_names(&d.cert_file, sni)
                .map_err(|e| format!("keys `sni.bootstrap_name`/`sni.broker_pattern`: {e}"))?
            {
                eprintln!("warning: {w}");
            }
        }
    }
    Ok(())
}

/// Each `[[upstream_identity]]` password file can be read (the password
/// itself is not shown) and each password variable is set.
fn check_identity_secrets(c: &Config) -> Result<(), String> {
    use super::{IdentitySource, Secret};
    for (i, e) in c.upstream_identity.entries.iter().enumerate() {
        let IdentitySource::User { password, .. } = &e.source else {
            continue;
        };
        match password {
            Secret::File(p) => {
                std::fs::File::open(p).map_err(|e| {
                    format!("key `upstream_identity[{i}].password_file`: {}: {e}", p.display())
                })?;
            }
            Secret::Env(v) if std::env::var_os(v).is_none() => {
                return Err(format!(
                    "key `upstream_identity[{i}].password_env`: environment variable {v} is not set"
                ))
            }
            Secret::Env(_) => {}
        }
    }
    Ok(())
}
