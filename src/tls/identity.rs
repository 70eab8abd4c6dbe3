//! Reads a certificate's subject, SAN names and serial, and matches them
//! against an allow-list of exact names or `*` patterns.

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The subject, e.g. `CN=clickhouse,O=Example`.
    pub subject: String,
    pub common_names: Vec<String>,
    pub dns_names: Vec<String>,
    pub serial: String,
}

pub fn identity(cert: &CertificateDer<'_>) -> Option<Identity> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let common_names = c
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                dns_names.push(d.to_string());
            }
        }
    }
    Some(Identity {
        subject: c.subject().to_string(),
        common_names,
        dns_names,
        serial: c.raw_serial_as_string(),
    })
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob(pattern: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

impl Identity {
    /// The principal this certificate names: its first CN, or its first
    /// SAN DNS name.
    pub fn principal(&self, from: crate::config::PrincipalFrom) -> Option<&str> {
        use crate::config::PrincipalFrom::*;
        match from {
            Cn => self.common_names.first(),
            SanDns => self.dns_names.first(),
        }
        .map(String::as_str)
        .filter(|n| !n.is_empty())
    }

    /// True if any CN or SAN DNS name matches any pattern.
    pub fn allowed_by(&self, patterns: &[String]) -> bool {
        self.common_names
            .iter()
            .chain(self.dns_names.iter())
            .any(|n| patterns.iter().any(|p| glob(p, n)))
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn principal_from_cn_or_san() {
        use crate::config::PrincipalFrom;
        let id = super::Identity {
            subject: "CN=svc-a,O=Example".into(),
            common_names: vec!["svc-a".into()],
            dns_names: vec!["svc-a.nomad.internal".into(), "other".into()],
            serial: "01".into(),
        };
        assert_eq!(id.principal(PrincipalFrom::Cn), Some("svc-a"));
        assert_eq!(id.principal(PrincipalFrom::SanDns), Some("svc-a.nomad.internal"));
        let bare = super::Identity {
            common_names: vec![],
            dns_names: vec![],
            ..id
        };
        assert_eq!(bare.principal(PrincipalFrom::Cn), None);
        assert_eq!(bare.principal(PrincipalFrom::SanDns), None);
    }

    #[test]
    fn globbing() {
        assert!(glob("app-client", "app-client"));
        assert!(!glob("app-client", "app-client2"));
        assert!(glob("*.svc.example.com", "a.svc.example.com"));
        assert!(!glob("*.svc.example.com", "svc.example.com.evil"));
        assert!(glob("click*", "clickhouse"));
        assert!(glob("*", "anything"));
        assert!(!glob("a*b", "acd"));
    }
}
