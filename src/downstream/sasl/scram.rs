//! The SCRAM-SHA-256/512 server (RFC 5802, RFC 7677): client-first
//! (GS2 header without channel binding), server-first with a fresh
//! nonce, client-final with the proof checked in constant time, and
//! server-final with the server signature. Kafka's extensions (such as
//! `tokenauth`) are refused.

use super::users::{Credential, Hash};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::Rng;
use subtle::ConstantTimeEq;

/// Longest user name accepted (bytes, escaped form).
const MAX_NAME: usize = 255;
const MAX_NONCE: usize = 256;

/// A parsed client-first message.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFirst<'a> {
    /// The GS2 header, `n,,` or `y,,` (or with `a=`), echoed in `c=`.
    pub gs2_header: &'a str,
    pub authzid: Option<String>,
    pub user: String,
    pub nonce: &'a str,
    /// `n=…,r=…`: part of the auth message.
    pub bare: &'a str,
}

/// Decodes a saslname: `=2C` is `,`, `=3D` is `=`, any other `=` is an error.
fn saslname(s: &str) -> Result<String, &'static str> {
    if s.is_empty() || s.len() > MAX_NAME {
        return Err("user name is empty or too long");
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err("user name has a bad escape"),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn printable_nonce(n: &str) -> bool {
    !n.is_empty() && n.len() <= MAX_NONCE && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst<'_>, &'static str> {
    let s = std::str::from_utf8(msg).map_err(|_| "client-first is not UTF-8")?;
    let (flag, rest) = s.split_once(',').ok_or("client-first has no GS2 header")?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err("channel binding is not supported"),
        _ => return Err("client-first has a bad GS2 channel-binding flag"),
    }
    let (authz, bare) = rest.split_once(',').ok_or("client-first has no GS2 header")?;
    let authzid = match authz {
        "" => None,
        a => Some(saslname(a.strip_prefix("a=").ok_or("bad GS2 authzid")?)?),
    };
    let gs2_header = &s[..s.len() - bare.len()];
    let mut parts = bare.split(',');
    let user = match parts.next().and_then(|p| p.strip_prefix("n=")) {
        Some(u) => saslname(u)?,
        None => return Err("client-first has no user name"),
    };
    let nonce = parts
        .next()
        .and_then(|p| p.strip_prefix("r="))
        .ok_or("client-first has no nonce")?;
    if !printable_nonce(nonce) {
        return Err("client nonce is empty, too long or not printable");
    }
    if parts.next().is_some() {
        return Err("SCRAM extensions (such as delegation-token auth) are not supported");
    }
    Ok(ClientFirst {
        gs2_header,
        authzid,
        user,
        nonce,
        bare,
    })
}

/// A parsed client-final message.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFinal<'a> {
    pub channel_binding: Vec<u8>,
    pub nonce: &'a str,
    pub proof: Vec<u8>,
    /// Everything before `,p=`: part of the auth message.
    pub without_proof: &'a str,
}

pub fn parse_client_final(msg: &[u8]) -> Result<ClientFinal<'_>, &'static str> {
    let s = std::str::from_utf8(msg).map_err(|_| "client-final is not UTF-8")?;
    let (without_proof, proof) = s.rsplit_once(",p=").ok_or("client-final has no proof")?;
    let mut parts = without_proof.split(',');
    let cb = parts
        .next()
        .and_then(|p| p.strip_prefix("c="))
        .ok_or("client-final has no channel binding")?;
    let nonce = parts
        .next()
        .and_then(|p| p.strip_prefix("r="))
        .ok_or("client-final has no nonce")?;
    if parts.next().is_some() {
        return Err("SCRAM extensions are not supported");
    }
    if cb.len() > 512 || proof.len() > 512 {
        return Err("client-final field too long");
    }
    Ok(ClientFinal {
        channel_binding: B64.decode(cb).map_err(|_| "channel binding is not base64")?,
        nonce,
        proof: B64.decode(proof).map_err(|_| "proof is not base64")?,
        without_proof,
    })
}

/// Between server-first and client-final.
pub struct Pending {
    pub user: String,
    credential: Credential,
    gs2_header: String,
    nonce: String,
    /// client-first-bare , server-first
    auth_prefix: String,
}

/// Why an exchange failed, with the claimed user when one was read.
pub type Refused = (Option<String>, &'static str);

/// Answers client-first: `Ok((pending, server-first))`, or why not. An
/// unknown user fails here, with the same message as a wrong password.
pub fn server_first(
    msg: &[u8],
    hash: Hash,
    lookup: impl Fn(&str) -> Option<Credential>,
) -> Result<(Pending, Vec<u8>), Refused> {
    let cf = parse_client_first(msg).map_err(|e| (None, e))?;
    let user = cf.user.clone();
    if cf.authzid.as_ref().is_some_and(|a| *a != cf.user) {
        return Err((Some(user), "authorization id differs from the user name"));
    }
    let credential = match lookup(&cf.user) {
        Some(c) if c.hash == hash => c,
        _ => return Err((Some(user), "invalid credentials")),
    };
    let mut rng = rand::rng();
    let ours: String = (0..24)
        .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
        .collect();
    let nonce = format!("{}{ours}", cf.nonce);
    let sf = format!(
        "r={nonce},s={},i={}",
        B64.encode(&credential.salt),
        credential.iterations
    );
    let pending = Pending {
        user,
        credential,
        gs2_header: cf.gs2_header.to_string(),
        nonce,
        auth_prefix: format!("{},{sf}", cf.bare),
    };
    Ok((pending, sf.into_bytes()))
}

impl Pending {
    /// Checks client-final; `Ok(server-final)` on a valid proof.
    pub fn server_final(self, msg: &[u8]) -> Result<Vec<u8>, &'static str> {
        let cf = parse_client_final(msg)?;
        if cf.channel_binding != self.gs2_header.as_bytes() {
            return Err("channel binding differs from client-first's GS2 header");
        }
        if cf.nonce != self.nonce {
            return Err("nonce differs from server-first's");
        }
        let h = self.credential.hash;
        let auth_message = format!("{},{}", self.auth_prefix, cf.without_proof);
        let client_sig = h.hmac(&self.credential.stored_key, auth_message.as_bytes());
        if cf.proof.len() != client_sig.len() {
            return Err("invalid credentials");
        }
        let client_key: Vec<u8> = cf.proof.iter().zip(&client_sig).map(|(a, b)| a ^ b).collect();
        let stored = h.digest(&client_key);
        if !bool::from(stored.ct_eq(&self.credential.stored_key)) {
            return Err("invalid credentials");
        }
        let server_sig = h.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_sig)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    fn rfc_credential() -> Credential {
        Credential::derive(
            Hash::Sha256,
            b"pencil",
            B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(),
            4096,
        )
    }

    #[test]
    fn rfc7677_client_proof_is_accepted_and_signed() {
        let (mut p, sf) = server_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", Hash::Sha256, |u| {
            (u == "user").then(rfc_credential)
        })
        .unwrap();
        assert!(String::from_utf8(sf)
            .unwrap()
            .starts_with("r=rOprNGfwEbeRWgbNEkqO"));
        // Replay the RFC's server nonce so its published proof applies.
        let rfc_nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        p.nonce = rfc_nonce.into();
        p.auth_prefix =
            format!("n=user,r=rOprNGfwEbeRWgbNEkqO,r={rfc_nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        let fin = format!("c=biws,r={rfc_nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        let sfin = p.server_final(fin.as_bytes()).unwrap();
        assert_eq!(sfin, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn a_wrong_proof_and_an_unknown_user_fail_alike() {
        let lookup = |u: &str| (u == "user").then(rfc_credential);
        let e = server_first(b"n,,n=nobody,r=abc", Hash::Sha256, lookup)
            .err()
            .unwrap();
        assert_eq!(e, (Some("nobody".into()), "invalid credentials"));
        let e = server_first(b"n,,n=user,r=abc", Hash::Sha512, lookup)
            .err()
            .unwrap();
        assert_eq!(
            e.1, "invalid credentials",
            "a SHA-256 entry does not serve SCRAM-SHA-512"
        );
        let (p, sf) = server_first(b"n,,n=user,r=abc", Hash::Sha256, lookup).unwrap();
        let sf = String::from_utf8(sf).unwrap();
        let nonce = sf.split(',').next().unwrap().strip_prefix("r=").unwrap();
        let bad = format!("c=biws,r={nonce},p={}", B64.encode([0u8; 32]));
        assert_eq!(p.server_final(bad.as_bytes()).unwrap_err(), "invalid credentials");
    }

    #[test]
    fn client_first_parser_refuses_what_it_does_not_serve() {
        let ok = parse_client_first(b"n,,n=u=2Cx=3D,r=abc").unwrap();
        assert_eq!(
            (ok.user.as_str(), ok.nonce, ok.gs2_header),
            ("u,x=", "abc", "n,,")
        );
        let a = parse_client_first(b"n,a=bob,n=bob,r=abc").unwrap();
        assert_eq!(a.authzid.as_deref(), Some("bob"));
        assert_eq!(a.gs2_header, "n,a=bob,");
        for bad in [
            &b"p=tls-unique,,n=u,r=abc"[..],
            b"n,,n=u,r=abc,tokenauth=true",
            b"n,,n=u=2,r=abc",
            b"n,,n=,r=abc",
            b"n,,r=abc",
            b"n,,n=u",
            b"x,,n=u,r=a",
            b"n,,n=u,r=",
            b"\xff",
        ] {
            assert!(
                parse_client_first(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn client_final_parser() {
        let f = parse_client_final(b"c=biws,r=abc,p=AAAA").unwrap();
        assert_eq!((f.channel_binding.as_slice(), f.nonce), (&b"n,,"[..], "abc"));
        assert_eq!(f.without_proof, "c=biws,r=abc");
        for bad in [
            &b"c=biws,r=abc"[..],
            b"r=abc,p=AAAA",
            b"c=biws,r=abc,x=1,p=AAAA",
            b"c=!,r=a,p=AAAA",
        ] {
            assert!(parse_client_final(bad).is_err());
        }
    }
}
