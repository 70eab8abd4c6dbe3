//! SCRAM-SHA-256 / SCRAM-SHA-512 client (RFC 5802, RFC 7677), with the
//! server signature verified.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha512,
}

/// Iteration counts above this are refused (a hostile broker could stall us).
const MAX_ITERATIONS: u32 = 100_000;

fn hmac(h: Hash, key: &[u8], data: &[u8]) -> Vec<u8> {
    match h {
        Hash::Sha256 => {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Hash::Sha512 => {
            let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
    }
}

fn digest(h: Hash, data: &[u8]) -> Vec<u8> {
    match h {
        Hash::Sha256 => Sha256::digest(data).to_vec(),
        Hash::Sha512 => Sha512::digest(data).to_vec(),
    }
}

fn salted(h: Hash, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    match h {
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

fn escape_user(u: &str) -> String {
    u.replace('=', "=3D").replace(',', "=2C")
}

/// One SCRAM conversation.
pub struct Scram {
    hash: Hash,
    password: String,
    client_first_bare: String,
    nonce: String,
    expected_server_signature: Option<Vec<u8>>,
}

impl Scram {
    pub fn new(hash: Hash, user: &str, password: &str, nonce: String) -> Self {
        Scram {
            hash,
            password: password.to_string(),
            client_first_bare: format!("n={},r={nonce}", escape_user(user)),
            nonce,
            expected_server_signature: None,
        }
    }

    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Answers server-first with client-final.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let sf = std::str::from_utf8(server_first).map_err(|_| "server-first is not UTF-8")?;
        let (mut r, mut s, mut i) = (None, None, None);
        for part in sf.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => r = Some(v),
                Some(("s=", v)) => s = Some(v),
                Some(("i=", v)) => i = Some(v),
                Some(("e=", v)) => return Err(format!("server error: {v}")),
                _ => {}
            }
        }
        let (r, s, i) = match (r, s, i) {
            (Some(r), Some(s), Some(i)) => (r, s, i),
            _ => return Err("server-first lacks r, s or i".into()),
        };
        if !r.starts_with(&self.nonce) || r.len() <= self.nonce.len() {
            return Err("server nonce does not extend ours".into());
        }
        let salt = B64.decode(s).map_err(|_| "salt is not base64")?;
        let iterations: u32 = i.parse().map_err(|_| "iteration count is not a number")?;
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(format!(
                "iteration count {iterations} out of range 1..={MAX_ITERATIONS}"
            ));
        }
        let h = self.hash;
        let salted = salted(h, self.password.as_bytes(), &salt, iterations);
        let client_key = hmac(h, &salted, b"Client Key");
        let stored_key = digest(h, &client_key);
        let without_proof = format!("c=biws,r={r}");
        let auth_message = format!("{},{sf},{without_proof}", self.client_first_bare);
        let client_sig = hmac(h, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&client_sig).map(|(a, b)| a ^ b).collect();
        let server_key = hmac(h, &salted, b"Server Key");
        self.expected_server_signature = Some(hmac(h, &server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final's signature.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), String> {
        let sf = std::str::from_utf8(server_final).map_err(|_| "server-final is not UTF-8")?;
        if let Some(e) = sf.strip_prefix("e=") {
            return Err(format!("server error: {e}"));
        }
        let v = sf
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or("server-final lacks a signature")?;
        let got = B64.decode(v).map_err(|_| "server signature is not base64")?;
        match &self.expected_server_signature {
            Some(want) if *want == got => Ok(()),
            _ => Err(
                "wrong server signature: the broker does not know the password (or is an impostor)".into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3.
    #[test]
    fn rfc7677_sha256_vector() {
        let mut s = Scram::new(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO".into());
        assert_eq!(s.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let cf = s
            .client_final(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(cf).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(s
            .verify_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .is_err());
        assert!(s
            .verify_server_final(b"e=invalid-proof")
            .unwrap_err()
            .contains("invalid-proof"));
    }

    #[test]
    fn hostile_server_first_is_refused() {
        let mut s = Scram::new(Hash::Sha512, "u,=x", "p", "abc".into());
        assert_eq!(s.client_first(), b"n,,n=u=2C=3Dx,r=abc");
        assert!(s.client_final(b"r=xyz,s=AAAA,i=4096").is_err());
        assert!(s.client_final(b"r=abcdef,s=AAAA,i=999999999").is_err());
        assert!(s.client_final(b"r=abcdef,s=!!,i=4096").is_err());
        assert!(s.client_final(b"garbage").is_err());
        assert!(
            s.verify_server_final(b"v=AAAA").is_err(),
            "no signature expected before client-final"
        );
    }
}
