//! The `[upstream_sasl]` section.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    MskIam,
    OauthBearer,
    ScramSha256,
    ScramSha512,
    Plain,
}

impl Mechanism {
    pub fn wire_name(self) -> &'static str {
        match self {
            Mechanism::MskIam => "AWS_MSK_IAM",
            Mechanism::OauthBearer => "OAUTHBEARER",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::Plain => "PLAIN",
        }
    }

    pub fn uses_aws(self) -> bool {
        matches!(self, Mechanism::MskIam | Mechanism::OauthBearer)
    }
}

/// A password from a file or an environment variable, never a flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    File(PathBuf),
    Env(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsOptions {
    pub profile: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    /// Stable across re-authentications, or MSK refuses with "Cannot change
    /// principals".
    pub session_name: String,
    pub sts_region: Option<String>,
    pub sts_endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslConfig {
    pub mechanism: Mechanism,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// IAM signing region; else parsed from the broker host name.
    pub region: Option<String>,
    pub aws: AwsOptions,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileSasl {
    pub mechanism: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub session_name: Option<String>,
    pub sts_region: Option<String>,
    pub sts_endpoint: Option<String>,
}

impl FileSasl {
    /// Fields set in `o` win.
    pub fn overlay(mut self, o: FileSasl) -> FileSasl {
        macro_rules! take {
            ($($f:ident),*) => { $( if o.$f.is_some() { self.$f = o.$f; } )* };
        }
        take!(
            mechanism,
            username,
            password_file,
            password_env,
            region,
            profile,
            role_arn,
            external_id,
            session_name,
            sts_region,
            sts_endpoint
        );
        self
    }
}

pub fn sasl(f: FileSasl) -> Result<Option<SaslConfig>, String> {
    let Some(m) = f.mechanism.as_deref() else {
        let stray = f.username.is_some() || f.password_file.is_some() || f.role_arn.is_some();
        return if stray {
            Err("key `upstream_sasl.mechanism`: missing; expected AWS_MSK_IAM, OAUTHBEARER, SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN".into())
        } else {
            Ok(None)
        };
    };
    let mechanism = match m.to_ascii_uppercase().as_str() {
        "AWS_MSK_IAM" => Mechanism::MskIam,
        "OAUTHBEARER" => Mechanism::OauthBearer,
        "SCRAM-SHA-256" => Mechanism::ScramSha256,
        "SCRAM-SHA-512" => Mechanism::ScramSha512,
        "PLAIN" => Mechanism::Plain,
        other => {
            return Err(format!(
                "key `upstream_sasl.mechanism`: `{other}`; expected AWS_MSK_IAM, OAUTHBEARER, SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN"
            ))
        }
    };
    let password = match (f.password_file, f.password_env) {
        (Some(_), Some(_)) => {
            return Err(
                "keys `upstream_sasl.password_file` and `upstream_sasl.password_env`: set only one".into(),
            )
        }
        (Some(p), None) => Some(Secret::File(p)),
        (None, Some(e)) => Some(Secret::Env(e)),
        (None, None) => None,
    };
    if !mechanism.uses_aws() && (f.username.is_none() || password.is_none()) {
        return Err(format!(
            "section `upstream_sasl`: {} needs `username` and `password_file` or `password_env`",
            mechanism.wire_name()
        ));
    }
    Ok(Some(SaslConfig {
        mechanism,
        username: f.username,
        password,
        region: f.region,
        aws: AwsOptions {
            profile: f.profile,
            role_arn: f.role_arn,
            external_id: f.external_id,
            session_name: f.session_name.unwrap_or_else(|| "kgate".into()),
            sts_region: f.sts_region,
            sts_endpoint: f.sts_endpoint,
        },
    }))
}
