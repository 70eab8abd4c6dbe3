//! `[policy]`: what each principal may do. Parsed and validated here; the
//! policy filter (`filter::policy`) enforces it.
//!
//! A connection's rules are found once per request: no principal → the
//! `default` rules ("allow", "deny", or a block of its own); a principal → the first `[[policy.principal]]` block
//! whose `names` match it; a principal no block names → `unmatched`.
//! Within a block every gate must agree: the API key must be allowed, and
//! each topic, group and transactional id it names must be allowed for the
//! operation the API performs. A block without `topics` leaves topics
//! unrestricted (likewise `groups`, `transactional_ids`); a block with an
//! empty list allows none.

/// Keys in the built-in `admin` group: everything that changes the
/// cluster's shape, configuration, ACLs, quotas, credentials or features,
/// deletes data, or describes ACLs, quotas and credentials.
pub const ADMIN_KEYS: &[i16] = &[
    19, // CreateTopics
    20, // DeleteTopics
    21, // DeleteRecords
    29, // DescribeAcls
    30, // CreateAcls
    31, // DeleteAcls
    33, // AlterConfigs
    34, // AlterReplicaLogDirs
    37, // CreatePartitions
    38, // CreateDelegationToken
    39, // RenewDelegationToken
    40, // ExpireDelegationToken
    43, // ElectLeaders
    44, // IncrementalAlterConfigs
    45, // AlterPartitionReassignments
    46, // ListPartitionReassignments
    47, // OffsetDelete
    48, // DescribeClientQuotas
    49, // AlterClientQuotas
    50, // DescribeUserScramCredentials
    51, // AlterUserScramCredentials
    57, // UpdateFeatures
    64, // UnregisterBroker
];

/// Keys every principal may send whatever its rules say: version
/// negotiation and authentication (answered before policy applies).
pub const ALWAYS_ALLOWED: &[i16] = &[17, 18, 36];

/// How a resource name is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Literal(String),
    Prefix(String),
    /// `*` any run of characters, `?` one character.
    Glob(String),
}

impl Pattern {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Literal(l) => l == name,
            Pattern::Prefix(p) => name.starts_with(p.as_str()),
            Pattern::Glob(g) => glob(g.as_bytes(), name.as_bytes()),
        }
    }
}

/// Iterative glob match with one back-tracking point (linear for `*`).
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Operations, as a bit set.
pub mod op {
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const DESCRIBE: u8 = 4;
    pub const CREATE: u8 = 8;
    pub const DELETE: u8 = 16;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRule {
    pub pattern: Pattern,
    pub ops: u8,
}

/// `None`: unrestricted; `Some(rules)`: only what a rule grants.
pub type Resources = Option<Vec<ResourceRule>>;

/// Grants `op` on `name`?
pub fn grants(r: &Resources, name: &str, op: u8) -> bool {
    match r {
        None => true,
        Some(rules) => rules.iter().any(|x| x.ops & op != 0 && x.pattern.matches(name)),
    }
}

/// One block of rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Allowed API keys, indexed by key (0..128); keys beyond are denied.
    pub apis: [bool; 128],
    pub topics: Resources,
    pub groups: Resources,
    pub transactional_ids: Resources,
}

impl Rules {
    pub fn everything() -> Self {
        Rules {
            apis: [true; 128],
            topics: None,
            groups: None,
            transactional_ids: None,
        }
    }

    pub fn nothing() -> Self {
        let mut apis = [false; 128];
        for &k in ALWAYS_ALLOWED {
            apis[k as usize] = true;
        }
        apis[3] = true; // Metadata, showing no topics
        Rules {
            apis,
            topics: Some(vec![]),
            groups: Some(vec![]),
            transactional_ids: Some(vec![]),
        }
    }

    pub fn api_allowed(&self, key: i16) -> bool {
        usize::try_from(key)
            .ok()
            .and_then(|k| self.apis.get(k).copied())
            .unwrap_or(false)
    }

    /// Whether these rules restrict anything beyond API keys.
    pub fn has_resources(&self) -> bool {
        self.topics.is_some() || self.groups.is_some() || self.transactional_ids.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalRules {
    pub names: Vec<Pattern>,
    pub rules: Rules,
}

/// The validated `[policy]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    pub default: Rules,
    pub principals: Vec<PrincipalRules>,
    pub unmatched: Rules,
}

impl PolicyConfig {
    /// The rules for a connection's principal.
    pub fn rules_for(&self, principal: Option<&str>) -> &Rules {
        match principal {
            None => &self.default,
            Some(p) => self
                .principals
                .iter()
                .find(|b| b.names.iter().any(|n| n.matches(p)))
                .map(|b| &b.rules)
                .unwrap_or(&self.unmatched),
        }
    }

    /// Every rule block (default, unmatched and per principal).
    pub fn all_rules(&self) -> impl Iterator<Item = &Rules> {
        [&self.default, &self.unmatched]
            .into_iter()
            .chain(self.principals.iter().map(|p| &p.rules))
    }
}

#[path = "policy_file.rs"]
mod file;
pub use file::{policy, ApiName, FileDefault, FilePolicy, FilePrincipal, FileResource};

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
