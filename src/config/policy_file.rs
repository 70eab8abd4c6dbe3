//! `[policy]` as written in the file, and its validation into
//! [`super::PolicyConfig`]: every error names the key.

use super::{
    op, Pattern, PolicyConfig, PrincipalRules, ResourceRule, Resources, Rules, ADMIN_KEYS, ALWAYS_ALLOWED,
};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePolicy {
    pub default: Option<FileDefault>,
    pub unmatched: Option<String>,
    #[serde(default)]
    pub principal: Vec<FilePrincipal>,
}

/// `default`: a word, or a rule block of its own (a principal block
/// without `names`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FileDefault {
    Word(String),
    Rules(Box<FilePrincipal>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePrincipal {
    #[serde(default)]
    pub names: Vec<String>,
    pub apis_allow: Option<Vec<ApiName>>,
    pub apis_deny: Option<Vec<ApiName>>,
    pub topics: Option<Vec<FileResource>>,
    pub groups: Option<Vec<FileResource>>,
    pub transactional_ids: Option<Vec<FileResource>>,
}

/// An API written as its name (`"Produce"`), its key (`0`), or a group
/// (`"admin"`, `"all"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ApiName {
    Key(i64),
    Name(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileResource {
    pub name: Option<String>,
    pub prefix: Option<String>,
    pub glob: Option<String>,
    pub ops: Vec<String>,
}

fn block_from_word(key: &str, w: Option<&str>, fallback: Rules) -> Result<Rules, String> {
    match w {
        None => Ok(fallback),
        Some("allow") => Ok(Rules::everything()),
        Some("deny") => Ok(Rules::nothing()),
        Some(o) => Err(format!("key `{key}`: `{o}` is not one of \"allow\", \"deny\"")),
    }
}

/// Validates `[policy]`; `None` when the file has no such section.
pub fn policy(f: Option<FilePolicy>) -> Result<Option<std::sync::Arc<PolicyConfig>>, String> {
    let Some(f) = f else { return Ok(None) };
    let default = match f.default {
        Some(FileDefault::Rules(b)) if b.names.is_empty() => {
            rules("policy.default", *b)?
        }
        Some(FileDefault::Rules(_)) => {
            return Err("key `policy.default.names`: the default rules apply to connections without a principal; remove `names`".into())
        }
        Some(FileDefault::Word(w)) => block_from_word("policy.default", Some(&w), Rules::everything())?,
        None => Rules::everything(),
    };
    let unmatched = block_from_word("policy.unmatched", f.unmatched.as_deref(), Rules::nothing())?;
    let mut principals = Vec::new();
    for (i, p) in f.principal.into_iter().enumerate() {
        principals.push(principal(&format!("policy.principal[{i}]"), p)?);
    }
    Ok(Some(std::sync::Arc::new(PolicyConfig {
        default,
        principals,
        unmatched,
    })))
}

fn principal(at: &str, p: FilePrincipal) -> Result<PrincipalRules, String> {
    if p.names.is_empty() {
        return Err(format!(
            "key `{at}.names`: list at least one principal name or glob"
        ));
    }
    let mut names = Vec::new();
    for (j, n) in p.names.iter().enumerate() {
        if n.is_empty() {
            return Err(format!("key `{at}.names[{j}]`: empty name"));
        }
        names.push(if n.contains(['*', '?']) {
            Pattern::Glob(n.clone())
        } else {
            Pattern::Literal(n.clone())
        });
    }
    Ok(PrincipalRules {
        names,
        rules: rules(at, p)?,
    })
}

/// The rules of one block (a principal's or the default's).
fn rules(at: &str, p: FilePrincipal) -> Result<Rules, String> {
    let mut apis = [false; 128];
    match &p.apis_allow {
        None => {
            apis = [true; 128];
            for &k in ADMIN_KEYS {
                apis[k as usize] = false;
            }
        }
        Some(list) => {
            for (j, a) in list.iter().enumerate() {
                for k in api_keys(&format!("{at}.apis_allow[{j}]"), a)? {
                    apis[k as usize] = true;
                }
            }
        }
    }
    for (j, a) in p.apis_deny.iter().flatten().enumerate() {
        for k in api_keys(&format!("{at}.apis_deny[{j}]"), a)? {
            apis[k as usize] = false;
        }
    }
    for &k in ALWAYS_ALLOWED {
        apis[k as usize] = true;
    }
    Ok(Rules {
        apis,
        topics: resources(&format!("{at}.topics"), p.topics, &TOPIC_OPS)?,
        groups: resources(&format!("{at}.groups"), p.groups, &GROUP_OPS)?,
        transactional_ids: resources(&format!("{at}.transactional_ids"), p.transactional_ids, &TXN_OPS)?,
    })
}

const TOPIC_OPS: [(&str, u8); 5] = [
    ("read", op::READ),
    ("write", op::WRITE),
    ("describe", op::DESCRIBE),
    ("create", op::CREATE),
    ("delete", op::DELETE),
];
const GROUP_OPS: [(&str, u8); 3] = [
    ("read", op::READ),
    ("describe", op::DESCRIBE),
    ("delete", op::DELETE),
];
const TXN_OPS: [(&str, u8); 2] = [("write", op::WRITE), ("describe", op::DESCRIBE)];

fn resources(at: &str, list: Option<Vec<FileResource>>, known: &[(&str, u8)]) -> Result<Resources, String> {
    let Some(list) = list else { return Ok(None) };
    let mut out = Vec::new();
    for (i, r) in list.into_iter().enumerate() {
        let at = format!("{at}[{i}]");
        let pattern = match (r.name, r.prefix, r.glob) {
            (Some(n), None, None) => Pattern::Literal(n),
            (None, Some(p), None) => Pattern::Prefix(p),
            (None, None, Some(g)) => Pattern::Glob(g),
            _ => {
                return Err(format!(
                    "key `{at}`: give exactly one of `name`, `prefix`, `glob`"
                ))
            }
        };
        if r.ops.is_empty() {
            return Err(format!("key `{at}.ops`: list at least one operation"));
        }
        let mut ops = 0;
        for o in &r.ops {
            let bit = if o == "all" {
                known.iter().fold(0, |a, (_, b)| a | b)
            } else {
                known
                    .iter()
                    .find(|(n, _)| n == o)
                    .map(|(_, b)| *b)
                    .ok_or_else(|| {
                        let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
                        format!("key `{at}.ops`: `{o}` is not one of {}, all", names.join(", "))
                    })?
            };
            ops |= bit;
        }
        out.push(ResourceRule { pattern, ops });
    }
    Ok(Some(out))
}

/// The keys one `apis_allow`/`apis_deny` entry stands for.
fn api_keys(at: &str, a: &ApiName) -> Result<Vec<i16>, String> {
    use kafka_protocol::messages::ApiKey;
    match a {
        ApiName::Key(k) => match i16::try_from(*k) {
            Ok(k) if ApiKey::try_from(k).is_ok() => Ok(vec![k]),
            _ => Err(format!("key `{at}`: {k} is not a Kafka API key")),
        },
        ApiName::Name(n) if n == "admin" => Ok(ADMIN_KEYS.to_vec()),
        ApiName::Name(n) if n == "all" => Ok((0..128).collect()),
        ApiName::Name(n) => (0..128i16)
            .find(|&k| ApiKey::try_from(k).is_ok_and(|api| format!("{api:?}") == *n))
            .map(|k| vec![k])
            .ok_or_else(|| {
                format!("key `{at}`: `{n}` is not a Kafka API name (e.g. \"Produce\", \"CreateTopics\"), key number, \"admin\" or \"all\"")
            }),
    }
}
