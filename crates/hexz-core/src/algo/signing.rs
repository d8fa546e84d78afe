//! Ed25519 signatures over an archive's header and index (feature `signing`).
//!
//! The signed message is `"hexz-signature-v1" || header[0..508] || index digest`, with the
//! header's key-wrap bytes (144..256) and signature bytes (256..320) zeroed. The index digest
//! commits to every block's BLAKE3 hash, so a valid signature authenticates every byte the
//! archive can return; leaving the key wrap out lets `hexz passwd` change the password of a
//! signed archive without invalidating its signature.
//!
//! Key files are short text files: `NAME.pub` holds the public key in hex; `NAME` holds the
//! 32-byte secret seed, in hex or encrypted under a password (PBKDF2 + AES-256-GCM).

use crate::error::{Error, Result};
use crate::format::{Header, MasterIndex};

const PUBLIC_TAG: &str = "hexz-ed25519-public v1";
#[cfg(feature = "signing")]
const SECRET_TAG: &str = "hexz-ed25519-secret v1";

/// BLAKE3 of a public key: what the header records as the signer.
pub fn fingerprint(public: &[u8; 32]) -> [u8; 32] {
    crate::algo::hash::blake3(public)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex<const N: usize>(s: &str, what: &str) -> Result<[u8; N]> {
    let bad = || Error::InvalidArgument(format!("{what}: expected {} hex digits", 2 * N));
    let s = s.trim();
    if s.len() != 2 * N || !s.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// The bytes a signature covers, for `header` as it will be stored (SIGNED flag and signer
/// set) and the archive's index digest.
pub fn signing_message(header: &Header, index_digest: &[u8; 32]) -> Vec<u8> {
    let mut h = header.encode();
    h[144..256].fill(0);
    h[256..320].fill(0);
    let mut m = b"hexz-signature-v1".to_vec();
    m.extend_from_slice(&h[..508]);
    m.extend_from_slice(index_digest);
    m
}

/// Renders a public key file.
pub fn public_key_file(public: &[u8; 32]) -> String {
    format!("{PUBLIC_TAG}\n{}\n", hex(public))
}

/// Parses a public key file.
pub fn parse_public_key(text: &str) -> Result<[u8; 32]> {
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(PUBLIC_TAG) {
        return Err(Error::InvalidArgument(format!(
            "not a hexz public key file (first line should be '{PUBLIC_TAG}')"
        )));
    }
    unhex::<32>(lines.next().unwrap_or(""), "public key")
}

#[cfg(feature = "signing")]
pub use imp::*;

#[cfg(feature = "signing")]
mod imp {
    use super::*;
    use crate::algo::encryption::Password;
    use crate::format::header::FLAG_SIGNED;
    use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
    use zeroize::Zeroizing;

    /// A fresh key pair: (secret seed, public key).
    pub fn generate_keypair() -> Result<(Zeroizing<[u8; 32]>, [u8; 32])> {
        let seed = Zeroizing::new(crate::algo::hash::random_bytes::<32>()?);
        let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        Ok((seed, public))
    }

    /// The public key of a secret seed.
    pub fn public_of(seed: &[u8; 32]) -> [u8; 32] {
        SigningKey::from_bytes(seed).verifying_key().to_bytes()
    }

    /// Signs `msg` with the secret seed.
    pub fn sign(seed: &[u8; 32], msg: &[u8]) -> [u8; 64] {
        SigningKey::from_bytes(seed).sign(msg).to_bytes()
    }

    /// Checks an Ed25519 signature.
    pub fn verify(public: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> Result<()> {
        let vk = VerifyingKey::from_bytes(public)
            .map_err(|_| Error::Signature("the public key is not a valid Ed25519 key".into()))?;
        vk.verify(msg, &Signature::from_bytes(sig)).map_err(|_| {
            Error::Signature(
                "the signature does not match: the archive was modified after signing, or the \
                 signature is not genuine"
                    .into(),
            )
        })
    }

    /// Renders a secret key file, encrypted under `password` when one is given.
    pub fn secret_key_file(seed: &[u8; 32], password: Option<&Password>) -> Result<String> {
        match password {
            None => Ok(format!("{SECRET_TAG}\nplain {}\n", hex(seed))),
            #[cfg(feature = "encryption")]
            Some(pw) => {
                use crate::algo::encryption::{wrap_key, DataKey, Kdf};
                let kw = wrap_key(
                    &DataKey(Zeroizing::new(*seed)),
                    pw,
                    Kdf::default(),
                    &[0; 16],
                )?;
                Ok(format!(
                    "{SECRET_TAG}\npbkdf2 {} {} {} {}\n",
                    kw.param1,
                    hex(&kw.salt),
                    hex(&kw.wrap_nonce),
                    hex(&kw.wrapped_key)
                ))
            }
            #[cfg(not(feature = "encryption"))]
            Some(_) => Err(Error::Unsupported(
                "password-protected keys need the encryption feature".into(),
            )),
        }
    }

    /// Parses a secret key file; protected keys need `password`.
    pub fn parse_secret_key(
        text: &str,
        password: Option<&Password>,
    ) -> Result<Zeroizing<[u8; 32]>> {
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(SECRET_TAG) {
            return Err(Error::InvalidArgument(format!(
                "not a hexz secret key file (first line should be '{SECRET_TAG}')"
            )));
        }
        let line = lines.next().unwrap_or("");
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["plain", seed] => Ok(Zeroizing::new(unhex::<32>(seed, "secret key")?)),
            #[cfg(feature = "encryption")]
            ["pbkdf2", iters, salt, nonce, wrapped] => {
                use crate::algo::encryption::unwrap_key;
                use crate::format::header::KeyWrap;
                let pw =
                    password.ok_or_else(|| Error::PasswordRequired("the secret key".into()))?;
                let kw = KeyWrap {
                    kdf: 1,
                    param1: iters.parse().map_err(|_| {
                        Error::InvalidArgument("secret key: bad iteration count".into())
                    })?,
                    param2: 0,
                    param3: 0,
                    salt: unhex::<32>(salt, "secret key salt")?,
                    wrap_nonce: unhex::<12>(nonce, "secret key nonce")?,
                    wrapped_key: unhex::<48>(wrapped, "secret key")?,
                };
                let k = unwrap_key(&kw, pw, &[0; 16])?;
                Ok(Zeroizing::new(*k.0))
            }
            _ => Err(Error::InvalidArgument(
                "secret key file: unrecognised key line".into(),
            )),
        }
    }

    /// Checks that `header` carries a valid signature by `public` over the header and index.
    pub fn check_archive_signature(
        header: &Header,
        master: &MasterIndex,
        public: &[u8; 32],
        name: &str,
    ) -> Result<()> {
        if header.flags & FLAG_SIGNED == 0 {
            return Err(Error::Signature(format!("{name} is not signed")));
        }
        let fp = fingerprint(public);
        if fp != header.signer {
            return Err(Error::Signature(format!(
                "{name} was signed by another key (fingerprint {}), not by this public key ({})",
                hex(&header.signer[..8]),
                hex(&fp[..8])
            )));
        }
        verify(
            public,
            &signing_message(header, &master.digest),
            &header.signature,
        )
        .map_err(|e| match e {
            Error::Signature(m) => Error::Signature(format!("{name}: {m}")),
            o => o,
        })
    }
}

/// Without the `signing` feature, requiring a signature always fails.
#[cfg(not(feature = "signing"))]
pub fn check_archive_signature(_: &Header, _: &MasterIndex, _: &[u8; 32], _: &str) -> Result<()> {
    Err(Error::Unsupported(
        "signature checks (this build lacks the signing feature)".into(),
    ))
}

#[cfg(all(test, feature = "signing"))]
mod tests {
    use super::*;
    use crate::algo::encryption::Password;

    #[test]
    fn key_files_round_trip_and_signatures_verify() {
        let (seed, public) = generate_keypair().unwrap();
        assert_eq!(parse_public_key(&public_key_file(&public)).unwrap(), public);
        let plain = secret_key_file(&seed, None).unwrap();
        assert_eq!(*parse_secret_key(&plain, None).unwrap(), *seed);
        let sig = sign(&seed, b"msg");
        verify(&public, b"msg", &sig).unwrap();
        assert!(matches!(
            verify(&public, b"msh", &sig),
            Err(Error::Signature(_))
        ));
        let (_, other) = generate_keypair().unwrap();
        assert!(verify(&other, b"msg", &sig).is_err());
        assert!(parse_public_key("garbage\n00").is_err());
    }

    #[cfg(feature = "encryption")]
    #[test]
    fn protected_secret_key_needs_the_password() {
        let (seed, _) = generate_keypair().unwrap();
        let pw = Password::new("k");
        let text = secret_key_file(&seed, Some(&pw)).unwrap();
        assert!(!text.contains(&hex(&*seed)));
        assert!(matches!(
            parse_secret_key(&text, None),
            Err(Error::PasswordRequired(_))
        ));
        assert!(matches!(
            parse_secret_key(&text, Some(&Password::new("x"))),
            Err(Error::WrongPassword)
        ));
        assert_eq!(*parse_secret_key(&text, Some(&pw)).unwrap(), *seed);
    }
}
