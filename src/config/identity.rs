//! `[[upstream_identity]]`: the upstream credentials a client principal
//! reaches the cluster with (its own IAM role, or its own SCRAM/PLAIN
//! user), and `upstream_identity_unmapped`: what happens to a principal no
//! entry matches.

use super::sasl::{Mechanism, SaslConfig, Secret};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Most `[[upstream_identity]]` entries (metric labels stay bounded by it).
pub const MAX_ENTRIES: usize = 256;

/// STS's limits on RoleSessionName: 2–64 of `[\w+=,.@-]`.
const SESSION_NAME_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// Assume this role with kgate's own AWS credentials.
    Role {
        role_arn: String,
        /// `None`: derived from the principal ([`session_name_for`]).
        session_name: Option<String>,
        external_id: Option<String>,
    },
    /// Authenticate as this SCRAM/PLAIN user.
    User { username: String, password: Secret },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamIdentity {
    /// An exact principal, or a pattern where `*` matches any run of
    /// characters.
    pub principal: String,
    pub source: IdentitySource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmapped {
    /// kgate's own `[upstream_sasl]` identity (today's behaviour).
    #[default]
    Default,
    /// The connection is refused before anything is sent upstream.
    Refuse,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentityMap {
    pub entries: Vec<UpstreamIdentity>,
    pub unmapped: Unmapped,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileIdentity {
    pub principal: Option<String>,
    pub role_arn: Option<String>,
    pub session_name: Option<String>,
    pub external_id: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
}

fn sts_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// The stable RoleSessionName for `principal`: `kgate-<principal>` when
/// that is valid as it is; otherwise disallowed characters become `-`, the
/// name is cut to fit, and 8 hex digits of the principal's SHA-256 keep
/// distinct principals distinct.
pub fn session_name_for(principal: &str) -> String {
    let plain = format!("kgate-{principal}");
    if plain.len() <= SESSION_NAME_MAX && plain.chars().all(sts_char) {
        return plain;
    }
    let digest = Sha256::digest(principal.as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let clean: String = plain
        .chars()
        .map(|c| if sts_char(c) { c } else { '-' })
        .take(SESSION_NAME_MAX - tag.len() - 1)
        .collect();
    format!("{clean}-{tag}")
}

fn check_session_name(key: &str, s: &str) -> Result<(), String> {
    if !(2..=SESSION_NAME_MAX).contains(&s.len()) || !s.chars().all(sts_char) {
        return Err(format!(
            "key `{key}`: `{s}` is not a valid STS session name; expected 2-64 characters of letters, digits and _+=,.@-"
        ));
    }
    Ok(())
}

fn check_role_arn(key: &str, s: &str) -> Result<(), String> {
    let mut parts = s.splitn(6, ':');
    let ok = parts.next() == Some("arn")
        && parts.next().is_some_and(|p| p.starts_with("aws"))
        && parts.next() == Some("iam")
        && parts.next() == Some("")
        && parts
            .next()
            .is_some_and(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        && parts
            .next()
            .is_some_and(|r| r.len() > 5 && r.starts_with("role/"));
    if !ok {
        return Err(format!(
            "key `{key}`: `{s}` is not an IAM role ARN; expected arn:aws:iam::ACCOUNT:role/NAME"
        ));
    }
    Ok(())
}

fn check_external_id(key: &str, s: &str) -> Result<(), String> {
    let ok = (2..=1224).contains(&s.len()) && s.chars().all(|c| sts_char(c) || c == ':' || c == '/');
    if !ok {
        return Err(format!(
            "key `{key}`: expected 2-1224 characters of letters, digits and _+=,.@:/-"
        ));
    }
    Ok(())
}

fn entry(i: usize, mut f: FileIdentity, sasl: Option<&SaslConfig>) -> Result<UpstreamIdentity, String> {
    let k = |field: &str| format!("upstream_identity[{i}].{field}");
    let principal = f.principal.take().filter(|p| !p.is_empty()).ok_or_else(|| {
        format!(
            "key `{}`: missing; expected a principal name or a `*` pattern",
            k("principal")
        )
    })?;
    let Some(sasl) = sasl else {
        return Err(format!(
            "section `upstream_identity[{i}]`: needs an [upstream_sasl] section (its mechanism is used with every identity)"
        ));
    };
    let m = sasl.mechanism;
    let user_keys = f.username.is_some() || f.password_file.is_some() || f.password_env.is_some();
    let source = match (f.role_arn.take(), user_keys) {
        (Some(_), true) => {
            return Err(format!(
                "section `upstream_identity[{i}]`: set either `role_arn` or `username` with a password, not both"
            ))
        }
        (None, false) => {
            return Err(format!(
                "section `upstream_identity[{i}]`: expected `role_arn` (AWS_MSK_IAM, OAUTHBEARER) or `username` with `password_file`/`password_env` (SCRAM, PLAIN)"
            ))
        }
        (Some(role_arn), false) => {
            if !m.uses_aws() {
                return Err(format!(
                    "key `{}`: upstream_sasl.mechanism is {}; a role needs AWS_MSK_IAM or OAUTHBEARER",
                    k("role_arn"),
                    m.wire_name()
                ));
            }
            check_role_arn(&k("role_arn"), &role_arn)?;
            if let Some(s) = &f.session_name {
                check_session_name(&k("session_name"), s)?;
            }
            if let Some(e) = &f.external_id {
                check_external_id(&k("external_id"), e)?;
            }
            IdentitySource::Role {
                role_arn,
                session_name: f.session_name,
                external_id: f.external_id,
            }
        }
        (None, true) => user(i, f, m)?,
    };
    Ok(UpstreamIdentity { principal, source })
}

fn user(i: usize, f: FileIdentity, m: Mechanism) -> Result<IdentitySource, String> {
    let k = |field: &str| format!("upstream_identity[{i}].{field}");
    if m.uses_aws() {
        return Err(format!(
            "key `{}`: upstream_sasl.mechanism is {}; a username needs SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN",
            k("username"),
            m.wire_name()
        ));
    }
    if f.session_name.is_some() || f.external_id.is_some() {
        return Err(format!(
            "section `upstream_identity[{i}]`: `session_name` and `external_id` go with `role_arn` only"
        ));
    }
    let username = f
        .username
        .filter(|u| !u.is_empty())
        .ok_or_else(|| format!("key `{}`: missing; a password needs a username", k("username")))?;
    let password = match (f.password_file, f.password_env) {
        (Some(p), None) => Secret::File(p),
        (None, Some(e)) => Secret::Env(e),
        _ => {
            return Err(format!(
                "keys `{}`/`{}`: set exactly one",
                k("password_file"),
                k("password_env")
            ))
        }
    };
    Ok(IdentitySource::User { username, password })
}

/// Validates the entries against `[upstream_sasl]`'s mechanism.
pub fn identities(
    list: Vec<FileIdentity>,
    unmapped: Option<String>,
    sasl: Option<&SaslConfig>,
) -> Result<IdentityMap, String> {
    if list.len() > MAX_ENTRIES {
        return Err(format!(
            "section `upstream_identity`: {} entries; at most {MAX_ENTRIES}",
            list.len()
        ));
    }
    let unmapped = match unmapped.as_deref() {
        None | Some("default") => Unmapped::Default,
        Some("refuse") => Unmapped::Refuse,
        Some(o) => {
            return Err(format!(
                "key `upstream_identity_unmapped`: `{o}`; expected `default` or `refuse`"
            ))
        }
    };
    if unmapped == Unmapped::Refuse && sasl.is_none() {
        return Err("key `upstream_identity_unmapped`: `refuse` needs an [upstream_sasl] section and [[upstream_identity]] entries".into());
    }
    let mut entries: Vec<UpstreamIdentity> = Vec::with_capacity(list.len());
    for (i, f) in list.into_iter().enumerate() {
        let e = entry(i, f, sasl)?;
        if entries.iter().any(|x| x.principal == e.principal) {
            return Err(format!(
                "key `upstream_identity[{i}].principal`: `{}` is listed twice",
                e.principal
            ));
        }
        entries.push(e);
    }
    Ok(IdentityMap { entries, unmapped })
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
