//! The users file: one SCRAM entry per user (salt, iterations, StoredKey,
//! ServerKey, base64), never a password. The same entry checks PLAIN by
//! deriving the salted password from the password offered.
//!
//! ```toml
//! [users.alice]
//! mechanism = "SCRAM-SHA-512"
//! salt = "…"
//! iterations = 8192
//! stored_key = "…"
//! server_key = "…"
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use subtle::ConstantTimeEq;

pub const DEFAULT_ITERATIONS: u32 = 8192;
/// Kafka's SCRAM minimum; the maximum bounds what one PLAIN check costs.
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    pub fn parse(s: &str) -> Option<Hash> {
        match s {
            "SCRAM-SHA-256" => Some(Hash::Sha256),
            "SCRAM-SHA-512" => Some(Hash::Sha512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha256 => "SCRAM-SHA-256",
            Hash::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length: new_from_slice cannot fail.
        match self {
            Hash::Sha256 => match <Hmac<Sha256> as Mac>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
            Hash::Sha512 => match <Hmac<Sha512> as Mac>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Hash::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            Hash::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

/// One user's SCRAM keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub hash: Hash,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credential({}, {} iterations)",
            self.hash.name(),
            self.iterations
        )
    }
}

impl Credential {
    pub fn derive(hash: Hash, password: &[u8], salt: Vec<u8>, iterations: u32) -> Credential {
        let salted = hash.salted(password, &salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        Credential {
            hash,
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
            salt,
            iterations,
        }
    }

    /// PLAIN: whether `password` derives this entry's StoredKey.
    pub fn check_password(&self, password: &[u8]) -> bool {
        let d = Credential::derive(self.hash, password, self.salt.clone(), self.iterations);
        bool::from(d.stored_key.ct_eq(&self.stored_key))
    }
}

#[derive(Debug, Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Entry {
    mechanism: String,
    salt: String,
    iterations: u32,
    stored_key: String,
    server_key: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    users: BTreeMap<String, Entry>,
}

fn entry(name: &str, e: &Entry) -> Result<Credential, String> {
    let k = |f: &str| format!("users.{name:?}.{f}");
    let hash = Hash::parse(&e.mechanism).ok_or_else(|| {
        format!(
            "key `{}`: {:?} is not \"SCRAM-SHA-256\" or \"SCRAM-SHA-512\"",
            k("mechanism"),
            e.mechanism
        )
    })?;
    let b = |f: &str, v: &str| B64.decode(v).map_err(|_| format!("key `{}`: not base64", k(f)));
    let c = Credential {
        hash,
        salt: b("salt", &e.salt)?,
        iterations: e.iterations,
        stored_key: b("stored_key", &e.stored_key)?,
        server_key: b("server_key", &e.server_key)?,
    };
    let len = hash.digest(b"").len();
    if c.stored_key.len() != len || c.server_key.len() != len {
        return Err(format!(
            "user {name:?}: keys are not {len} bytes long for {}",
            hash.name()
        ));
    }
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&c.iterations) || c.salt.is_empty() {
        return Err(format!(
            "key `{}`: expected {MIN_ITERATIONS} to {MAX_ITERATIONS}, with a non-empty salt",
            k("iterations")
        ));
    }
    Ok(c)
}

/// The users, loaded and checked.
#[derive(Debug, Default)]
pub struct Users {
    map: HashMap<String, Credential>,
}

impl Users {
    pub fn load(path: &Path) -> Result<Users, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Users::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Users, String> {
        let f: File = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let mut map = HashMap::new();
        for (name, e) in &f.users {
            map.insert(name.clone(), entry(name, e)?);
        }
        Ok(Users { map })
    }

    pub fn get(&self, name: &str) -> Option<&Credential> {
        self.map.get(name)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Adds or replaces `name` in the users file at `path` (created if
/// missing), written atomically with mode 0600. Returns whether an
/// existing entry was replaced.
pub fn add_user(
    path: &Path,
    name: &str,
    hash: Hash,
    password: &[u8],
    iterations: u32,
) -> Result<bool, String> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err("user name must be 1 to 255 characters without control characters".into());
    }
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(format!(
            "--iterations: expected {MIN_ITERATIONS} to {MAX_ITERATIONS}"
        ));
    }
    let mut file = match std::fs::read_to_string(path) {
        Ok(text) => {
            Users::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            toml::from_str::<File>(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    };
    let salt: [u8; 24] = rand::random();
    let c = Credential::derive(hash, password, salt.to_vec(), iterations);
    let replaced = file
        .users
        .insert(
            name.to_string(),
            Entry {
                mechanism: hash.name().into(),
                salt: B64.encode(&c.salt),
                iterations,
                stored_key: B64.encode(&c.stored_key),
                server_key: B64.encode(&c.server_key),
            },
        )
        .is_some();
    let text = toml::to_string(&file).map_err(|e| e.to_string())?;
    write_private(path, text.as_bytes())?;
    Ok(replaced)
}

/// Writes a temporary file (0600) beside `path`, then renames it over.
fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or("the users file path names no file")?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: cannot write: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_writes_keys_not_passwords_and_plain_checks_against_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users.toml");
        assert!(!add_user(&p, "alice", Hash::Sha512, b"s3cret-pw", 4096).unwrap());
        assert!(
            add_user(&p, "alice", Hash::Sha512, b"other-pw", 4096).unwrap(),
            "replaced"
        );
        add_user(&p, "bob.x", Hash::Sha256, b"pw", 4096).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains("other-pw") && !text.contains("s3cret"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let u = Users::load(&p).unwrap();
        assert_eq!(u.len(), 2);
        let a = u.get("alice").unwrap();
        assert!(a.check_password(b"other-pw"));
        assert!(!a.check_password(b"s3cret-pw"));
        assert_eq!(u.get("bob.x").unwrap().hash, Hash::Sha256);
        assert!(add_user(&p, "x", Hash::Sha256, b"pw", 10).is_err());
    }

    #[test]
    fn bad_files_name_the_key() {
        let e = Users::parse("[users.a]\nmechanism = \"MD5\"\nsalt = \"AA==\"\niterations = 4096\nstored_key = \"\"\nserver_key = \"\"").unwrap_err();
        assert!(e.contains("users.\"a\".mechanism"), "{e}");
        let e = Users::parse("[users.a]\nmechanism = \"SCRAM-SHA-256\"\nsalt = \"AA==\"\niterations = 4096\nstored_key = \"AA==\"\nserver_key = \"AA==\"").unwrap_err();
        assert!(e.contains("32 bytes"), "{e}");
        assert!(Users::parse("[users.a]\npassword = \"x\"").is_err());
        assert!(Users::parse("").unwrap().is_empty());
    }
}
