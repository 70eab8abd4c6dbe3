//! PLAIN (RFC 4616): `authzid NUL authcid NUL passwd`. The authzid must be
//! empty or equal to the user; the password is checked against the user's
//! SCRAM entry.

/// Each field is at most 255 bytes (RFC 4616).
const MAX_FIELD: usize = 255;

#[derive(Debug, PartialEq, Eq)]
pub struct Plain<'a> {
    pub user: &'a str,
    pub password: &'a [u8],
}

/// Parses a PLAIN message. On error, the user (when one could be read)
/// comes back for the log.
pub fn parse(msg: &[u8]) -> Result<Plain<'_>, (Option<String>, &'static str)> {
    let mut parts = msg.splitn(3, |b| *b == 0);
    let (Some(authz), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next()) else {
        return Err((None, "PLAIN message is not authzid NUL user NUL password"));
    };
    let user = std::str::from_utf8(user).map_err(|_| (None, "PLAIN user is not UTF-8"))?;
    let named = Some(user.chars().take(MAX_FIELD).collect::<String>());
    if user.is_empty() || user.len() > MAX_FIELD {
        return Err((named, "PLAIN user is empty or too long"));
    }
    if password.is_empty() || password.len() > MAX_FIELD || password.contains(&0) {
        return Err((named, "PLAIN password is empty, too long or holds NUL"));
    }
    if !authz.is_empty() && authz != user.as_bytes() {
        return Err((named, "authorization id differs from the user name"));
    }
    Ok(Plain { user, password })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_their_limits() {
        assert_eq!(
            parse(b"\0alice\0pw").unwrap(),
            Plain {
                user: "alice",
                password: b"pw"
            }
        );
        assert_eq!(parse(b"alice\0alice\0pw").unwrap().user, "alice");
        assert_eq!(parse(b"bob\0alice\0pw").unwrap_err().0.as_deref(), Some("alice"));
        assert!(parse(b"\0alice").is_err());
        assert!(parse(b"\0\0pw").is_err());
        assert!(parse(b"\0alice\0").is_err());
        assert!(parse(b"\0alice\0p\0w").is_err());
        assert!(parse(b"\0\xff\0pw").is_err());
        let long = [b"\0a\0".as_slice(), &[b'x'; 256]].concat();
        assert!(parse(&long).is_err());
    }
}
