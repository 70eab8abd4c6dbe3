//! What `kgate check-config` adds to building the config: the files the
//! config names are read and parsed the way `run` will read them, and each
//! certificate is checked against its key.

use super::Config;
use crate::tls::material::{check_pair, load_roots};

/// Reads every TLS file `c` names: CA bundles parse, and each certificate
/// and key parse and belong together. Errors name the config key. (The
/// client-auth users file and JWKS are read by the `check-config` command
/// itself: their parsers live with the SASL server, not in this leaf.)
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
