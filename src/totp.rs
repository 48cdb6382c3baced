//! TOTP for step-up (RFC 6238): secrets, codes, recovery codes, secrets
//! sealed at rest, and the QR code an authenticator app scans at enrolment.
//!
//! What this module promises:
//! - **The caller owns the clock.** [`verify`] and [`code_at`] take the unix
//!   time; nothing here reads the system clock, so tests control time.
//! - **A code is accepted once.** [`verify`] returns the matched time step; the
//!   caller stores it as the user's last step and passes it back next time. A
//!   step that is not greater is refused as [`TotpError::Replayed`]: the same
//!   code twice, and an older code after a newer one.
//! - **Constant-time comparisons.** Codes and recovery-code hashes are compared
//!   with `subtle`, and every step of the skew window and every stored hash is
//!   checked whichever one matches.
//! - **No secret in `Debug`, `Display` or errors.** [`Secret`] prints as
//!   `Secret(..)`; [`TotpError`] carries none of its input.
//! - **Secrets sealed at rest** with ChaCha20-Poly1305 ([`seal`], [`open`]): a
//!   random 96-bit nonce per seal and caller-chosen associated data (such as
//!   `site|user`), so a row copied to another user does not open.
//! - **Recovery codes stored hashed** (HMAC-SHA256 under a gateway key), typed
//!   forms normalised the same way on both sides.
//! - **No panic on any input**: malformed codes, secrets, sealed bytes,
//!   parameters and over-long URIs are errors.
//!
//! Typed codes: ASCII whitespace anywhere is ignored (apps display `123 456`,
//! pasted codes carry a newline); what remains must be exactly
//! [`Params::digits`] ASCII digits, or the code is [`TotpError::Malformed`].
//!
//! Not here: the lock after repeated wrong codes, storage and audit belong to
//! the step-up layer that calls this module.

use std::fmt;
use std::str::FromStr;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use qrcode::render::{svg, unicode::Dense1x2};
use qrcode::{EcLevel, QrCode};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Bytes in a generated secret: the 160 bits RFC 4226 recommends.
const SECRET_LEN: usize = 20;
/// RFC 4226: the shared secret MUST be at least 128 bits.
const MIN_SECRET_LEN: usize = 16;
/// Longer than any real secret (the SHA-512 test seed is 64 bytes); bounds work.
const MAX_SECRET_LEN: usize = 128;
/// A typed code longer than this is refused before any work is done.
const MAX_CODE_INPUT: usize = 64;
/// A typed recovery code longer than this is refused before hashing.
const MAX_RECOVERY_INPUT: usize = 128;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Lower case letters and digits without 0, o, 1, l and i, so a code read
/// aloud or off paper cannot be mistyped as another symbol: 31 symbols.
const RECOVERY_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
/// 15 symbols of 31 are 74 bits (12 would be only 59.4).
const RECOVERY_GROUPS: usize = 3;
const RECOVERY_GROUP_LEN: usize = 5;
/// The QR specification's quiet zone, in modules.
const QR_QUIET_ZONE: usize = 4;
/// Pixels per module in the PNG: sharp on screens and printers.
const PNG_MODULE_PX: usize = 8;

/// Why a TOTP operation failed. Carries no secret, code or input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// The typed code is not exactly `digits` digits (after dropping whitespace).
    #[error("the code is not a well-formed one-time code")]
    Malformed,
    /// The code matches no step in the skew window.
    #[error("the code is wrong")]
    Wrong,
    /// The code matches only steps at or before the last accepted one.
    #[error("the code was already used")]
    Replayed,
    /// The secret is not valid base32 or is shorter than 128 bits or too long.
    #[error("the TOTP secret is invalid")]
    BadSecret,
    /// The parameters are unusable: digits outside 6..=8, period 0 or an
    /// unknown algorithm name.
    #[error("the TOTP parameters are invalid")]
    BadParams,
    /// A sealed secret did not open: wrong key, wrong associated data,
    /// tampered or truncated.
    #[error("the sealed TOTP secret could not be opened")]
    Crypto,
    /// The QR code could not be made (data too long) or encoded.
    #[error("the QR code could not be rendered")]
    Qr,
}

/// The HMAC behind the codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// HMAC-SHA1: what every authenticator app supports.
    #[default]
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Algorithm {
    /// The name used in `otpauth://` URIs: `SHA1`, `SHA256` or `SHA512`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    fn to_lib(self) -> totp_rs::Algorithm {
        match self {
            Algorithm::Sha1 => totp_rs::Algorithm::SHA1,
            Algorithm::Sha256 => totp_rs::Algorithm::SHA256,
            Algorithm::Sha512 => totp_rs::Algorithm::SHA512,
        }
    }
}

impl FromStr for Algorithm {
    type Err = TotpError;

    /// Parses `SHA1`, `SHA256` or `SHA512`, in any case (as config spells it).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "SHA1" => Ok(Algorithm::Sha1),
            "SHA256" => Ok(Algorithm::Sha256),
            "SHA512" => Ok(Algorithm::Sha512),
            _ => Err(TotpError::BadParams),
        }
    }
}

/// TOTP parameters (from config; defaults SHA1, 6 digits, 30 s, skew 1 step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// The HMAC algorithm.
    pub algorithm: Algorithm,
    /// Digits per code, 6..=8.
    pub digits: u32,
    /// Seconds per time step, at least 1.
    pub period: u64,
    /// Steps accepted either side of the current one (clock drift, slow typing).
    pub skew: u8,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
            skew: 1,
        }
    }
}

impl Params {
    /// Checks the parameters are usable: 6..=8 digits (RFC 4226) and a period
    /// of at least one second. Every function here checks this itself too.
    pub fn validate(&self) -> Result<(), TotpError> {
        if (6..=8).contains(&self.digits) && self.period > 0 {
            Ok(())
        } else {
            Err(TotpError::BadParams)
        }
    }
}

/// A raw TOTP secret (20 random bytes when generated, 16..=128 bytes when
/// loaded). `Debug` prints `Secret(..)`; equality is constant-time.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Secret {}

impl Secret {
    /// A new secret of 160 bits from the operating system's random source.
    ///
    /// Panics only if the operating system cannot supply randomness, which no
    /// input can cause and no key generator could survive.
    pub fn generate() -> Secret {
        let mut bytes = vec![0u8; SECRET_LEN];
        OsRng.fill_bytes(&mut bytes);
        Secret(bytes)
    }

    /// A secret from raw bytes: at least 128 bits (RFC 4226), at most 128 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Secret, TotpError> {
        if (MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&bytes.len()) {
            Ok(Secret(bytes.to_vec()))
        } else {
            Err(TotpError::BadSecret)
        }
    }

    /// The secret in unpadded RFC 4648 base32, as authenticator apps take it.
    pub fn base32(&self) -> String {
        match totp_rs::Secret::Raw(self.0.clone()).to_encoded() {
            totp_rs::Secret::Encoded(s) => s,
            // `to_encoded` of a raw secret is always encoded.
            totp_rs::Secret::Raw(_) => String::new(),
        }
    }

    /// Parses base32 as people copy it: any case, spaces and `=` padding
    /// ignored. Fails on other characters or a length outside 16..=128 bytes.
    pub fn from_base32(s: &str) -> Result<Secret, TotpError> {
        // Base32 of the longest secret is 205 characters; spaces are allowed.
        if s.len() > MAX_SECRET_LEN * 4 {
            return Err(TotpError::BadSecret);
        }
        let cleaned: String = s
            .chars()
            .filter(|c| !c.is_ascii_whitespace() && *c != '=')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bytes = totp_rs::Secret::Encoded(cleaned)
            .to_bytes()
            .map_err(|_| TotpError::BadSecret)?;
        Secret::from_bytes(&bytes)
    }

    fn totp(&self, params: &Params) -> Result<totp_rs::TOTP, TotpError> {
        params.validate()?;
        // Skew is applied by `verify` itself, which needs the matched step.
        totp_rs::TOTP::new(
            params.algorithm.to_lib(),
            params.digits as usize,
            0,
            params.period,
            self.0.clone(),
        )
        .map_err(|_| TotpError::BadSecret)
    }
}

/// The `otpauth://totp/` URI for authenticator apps (Key URI Format). The label
/// is `issuer:account`, each part percent-encoded so a `:`, space, `&` or
/// non-ASCII letter in either cannot change the URI's structure; the issuer is
/// repeated as a parameter, as the format recommends. An empty issuer is left out.
pub fn otpauth_uri(secret: &Secret, issuer: &str, account: &str, params: &Params) -> String {
    let mut uri = String::from("otpauth://totp/");
    if !issuer.is_empty() {
        uri.push_str(&percent_encode(issuer));
        uri.push(':');
    }
    uri.push_str(&percent_encode(account));
    uri.push_str("?secret=");
    uri.push_str(&secret.base32());
    if !issuer.is_empty() {
        uri.push_str("&issuer=");
        uri.push_str(&percent_encode(issuer));
    }
    uri.push_str(&format!(
        "&algorithm={}&digits={}&period={}",
        params.algorithm.as_str(),
        params.digits,
        params.period
    ));
    uri
}

/// Percent-encodes everything but RFC 3986 unreserved characters. Spaces become
/// `%20`, not `+`, because some apps show a `+` literally in the label.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The code for unix time `now`. For enrolment self-checks and tests: the
/// gateway itself only ever verifies.
pub fn code_at(secret: &Secret, now: u64, params: &Params) -> Result<String, TotpError> {
    Ok(secret.totp(params)?.generate(now))
}

/// Checks `code` at unix time `now` within ±`skew` steps. Returns the matched
/// time step. A step that is not greater than `last_step` (the last accepted
/// step for this user) is a replay and is refused: a code is accepted once
/// only, and an older code after a newer one is refused too.
///
/// Should a code match several steps, the newest fresh one is returned, which
/// makes the replay rule stricter, never looser.
pub fn verify(
    secret: &Secret,
    code: &str,
    now: u64,
    params: &Params,
    last_step: Option<u64>,
) -> Result<u64, TotpError> {
    let totp = secret.totp(params)?;
    let code = normalise_code(code, params.digits)?;
    let current = now / params.period;
    let skew = u64::from(params.skew);
    let mut fresh = None;
    let mut replayed = false;
    // Every step in the window is computed and compared, matched or not.
    for step in current.saturating_sub(skew)..=current.saturating_add(skew) {
        // A step whose start does not fit in u64 cannot be a real time.
        let Some(start) = step.checked_mul(params.period) else {
            continue;
        };
        let hit: bool = totp
            .generate(start)
            .as_bytes()
            .ct_eq(code.as_bytes())
            .into();
        if hit && last_step.is_some_and(|last| step <= last) {
            replayed = true;
        } else if hit {
            fresh = Some(step);
        }
    }
    match fresh {
        Some(step) => Ok(step),
        None if replayed => Err(TotpError::Replayed),
        None => Err(TotpError::Wrong),
    }
}

/// Drops ASCII whitespace and requires exactly `digits` ASCII digits.
fn normalise_code(code: &str, digits: u32) -> Result<String, TotpError> {
    if code.len() > MAX_CODE_INPUT {
        return Err(TotpError::Malformed);
    }
    let kept: String = code.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let right_length = usize::try_from(digits).is_ok_and(|d| kept.len() == d);
    if right_length && kept.bytes().all(|b| b.is_ascii_digit()) {
        Ok(kept)
    } else {
        Err(TotpError::Malformed)
    }
}

/// Seals a secret for storage: ChaCha20-Poly1305 under `key` (32 bytes the
/// caller derives from the gateway key file), a random 96-bit nonce per call,
/// and `aad` (e.g. `site|user`) bound in. Returns `nonce || ciphertext || tag`.
///
/// Fails only if the cipher refuses the input, which it does for nothing
/// smaller than 256 GiB; the `Result` keeps that path panic-free.
pub fn seal(key: &[u8; 32], aad: &[u8], secret: &Secret) -> Result<Vec<u8>, TotpError> {
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let payload = Payload {
        msg: &secret.0,
        aad,
    };
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), payload)
        .map_err(|_| TotpError::Crypto)?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`seal`] made. Any wrong key, wrong `aad`, changed or missing
/// byte is [`TotpError::Crypto`]; nothing about the cause is revealed.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Secret, TotpError> {
    let Some((nonce, body)) = sealed.split_first_chunk::<NONCE_LEN>() else {
        return Err(TotpError::Crypto);
    };
    if body.len() < TAG_LEN {
        return Err(TotpError::Crypto);
    }
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    let plain = cipher
        .decrypt(&Nonce::from(*nonce), Payload { msg: body, aad })
        .map_err(|_| TotpError::Crypto)?;
    Secret::from_bytes(&plain)
}

/// `n` distinct one-time recovery codes, shown once, like `k7pq2-x9mzt-4hcaw`:
/// 15 symbols from 31 unambiguous ones (no 0/o/1/l/i), about 74 bits each.
pub fn recovery_codes(n: usize) -> Vec<String> {
    let mut codes: Vec<String> = Vec::with_capacity(n);
    while codes.len() < n {
        let code = recovery_code();
        // A repeat is astronomically unlikely, but "ten codes" must mean ten.
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

fn recovery_code() -> String {
    let mut rng = OsRng;
    let mut code = String::with_capacity(RECOVERY_GROUPS * (RECOVERY_GROUP_LEN + 1));
    for group in 0..RECOVERY_GROUPS {
        if group > 0 {
            code.push('-');
        }
        for _ in 0..RECOVERY_GROUP_LEN {
            // `gen_range` is unbiased, so every symbol carries log2(31) bits.
            let pick = rng.gen_range(0..RECOVERY_ALPHABET.len());
            if let Some(&symbol) = RECOVERY_ALPHABET.get(pick) {
                code.push(char::from(symbol));
            }
        }
    }
    code
}

/// The stored form of a recovery code: lower-case hex HMAC-SHA256 under `key`
/// over the normalised code (ASCII case folded, dashes and whitespace removed).
pub fn hash_recovery(key: &[u8; 32], code: &str) -> String {
    recovery_mac(key, &normalise_recovery(code))
        .map(hex::encode)
        .unwrap_or_default()
}

/// The index of the stored hash that `code` matches, normalised as in
/// [`hash_recovery`]. Every stored hash is compared, in constant time. Empty,
/// over-long or unmatched input is `None`; the caller removes the used hash.
pub fn match_recovery(key: &[u8; 32], code: &str, hashes: &[String]) -> Option<usize> {
    if code.len() > MAX_RECOVERY_INPUT {
        return None;
    }
    let normalised = normalise_recovery(code);
    if normalised.is_empty() {
        return None;
    }
    let wanted = hex::encode(recovery_mac(key, &normalised)?);
    let mut found = None;
    for (index, stored) in hashes.iter().enumerate() {
        let same: bool = stored.as_bytes().ct_eq(wanted.as_bytes()).into();
        if same && found.is_none() {
            found = Some(index);
        }
    }
    found
}

fn normalise_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// `None` never happens (HMAC takes keys of any length); it keeps this panic-free.
fn recovery_mac(key: &[u8; 32], normalised: &str) -> Option<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(normalised.as_bytes());
    Some(mac.finalize().into_bytes().into())
}

fn qr(uri: &str) -> Result<QrCode, TotpError> {
    // Level M survives a smudged screen or a glare spot and still fits an
    // otpauth URI in a small symbol.
    QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::M).map_err(|_| TotpError::Qr)
}

/// The QR code as Unicode half blocks (two modules per character cell, so it
/// looks square), with the 4-module quiet zone. The block glyphs are the
/// *light* modules: on a terminal with light text on a dark background, the
/// usual default, the camera sees dark modules on a light field. Lines end in
/// `\n` except the last.
pub fn qr_terminal(uri: &str) -> Result<String, TotpError> {
    let code = qr(uri)?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .module_dimensions(1, 1)
        .build())
}

/// The QR code as a standalone SVG document (black on white, quiet zone
/// included, 8 units per module).
pub fn qr_svg(uri: &str) -> Result<String, TotpError> {
    let code = qr(uri)?;
    Ok(code
        .render::<svg::Color<'_>>()
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .quiet_zone(true)
        .module_dimensions(8, 8)
        .build())
}

/// The QR code as a PNG: 8-bit greyscale, black on white, 8 px per module,
/// quiet zone included.
pub fn qr_png(uri: &str) -> Result<Vec<u8>, TotpError> {
    let code = qr(uri)?;
    let (side, pixels) = png_pixels(&code.to_colors(), code.width());
    let side = u32::try_from(side).map_err(|_| TotpError::Qr)?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|_| TotpError::Qr)?;
    writer
        .write_image_data(&pixels)
        .map_err(|_| TotpError::Qr)?;
    writer.finish().map_err(|_| TotpError::Qr)?;
    Ok(out)
}

/// Rasterises `modules` (row-major, `width` a side) with the quiet zone; returns
/// the image side in pixels and its greyscale pixels.
fn png_pixels(modules: &[qrcode::Color], width: usize) -> (usize, Vec<u8>) {
    let side_modules = width + 2 * QR_QUIET_ZONE;
    let side = side_modules * PNG_MODULE_PX;
    let mut pixels = vec![0xFFu8; side * side];
    for (index, row) in pixels.chunks_exact_mut(side).enumerate() {
        let y = (index / PNG_MODULE_PX).checked_sub(QR_QUIET_ZONE);
        for (column, pixel) in row.iter_mut().enumerate() {
            let x = (column / PNG_MODULE_PX).checked_sub(QR_QUIET_ZONE);
            let module = match (x, y) {
                (Some(x), Some(y)) if x < width && y < width => modules.get(y * width + x),
                _ => None,
            };
            if module == Some(&qrcode::Color::Dark) {
                *pixel = 0;
            }
        }
    }
    (side, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";
    const KEY: [u8; 32] = [7u8; 32];

    fn params(algorithm: Algorithm, digits: u32, skew: u8) -> Params {
        Params {
            algorithm,
            digits,
            period: 30,
            skew,
        }
    }

    fn secret() -> Secret {
        Secret::from_bytes(SEED_SHA1).unwrap()
    }

    /// RFC 6238 Appendix B: (time, SHA1, SHA256, SHA512 codes).
    const RFC_VECTORS: [(u64, &str, &str, &str); 6] = [
        (59, "94287082", "46119246", "90693936"),
        (1_111_111_109, "07081804", "68084774", "25091201"),
        (1_111_111_111, "14050471", "67062674", "99943326"),
        (1_234_567_890, "89005924", "91819424", "93441116"),
        (2_000_000_000, "69279037", "90698825", "38618901"),
        (20_000_000_000, "65353130", "77737706", "47863826"),
    ];

    #[test]
    fn rfc6238_appendix_b_vectors_verify_at_their_step() {
        let seeds = [
            (Algorithm::Sha1, SEED_SHA1),
            (Algorithm::Sha256, SEED_SHA256),
            (Algorithm::Sha512, SEED_SHA512),
        ];
        for (time, sha1, sha256, sha512) in RFC_VECTORS {
            for ((algorithm, seed), code) in seeds.iter().zip([sha1, sha256, sha512]) {
                let p = params(*algorithm, 8, 0);
                let s = Secret::from_bytes(seed).unwrap();
                assert_eq!(
                    verify(&s, code, time, &p, None),
                    Ok(time / 30),
                    "{algorithm:?} {time}"
                );
                assert_eq!(code_at(&s, time, &p).unwrap(), code);
            }
        }
    }

    #[test]
    fn the_step_numbers_of_the_rfc_times() {
        let p = params(Algorithm::Sha1, 8, 0);
        let expected = [
            1,
            37_037_036,
            37_037_037,
            41_152_263,
            66_666_666,
            666_666_666,
        ];
        for ((time, code, _, _), step) in RFC_VECTORS.iter().zip(expected) {
            assert_eq!(verify(&secret(), code, *time, &p, None), Ok(step));
        }
    }

    #[test]
    fn one_step_of_skew_either_side_needs_skew_one() {
        let now: u64 = 1_000_000_020; // step 33_333_334
        let step = now / 30;
        for offset in [-30i64, 30] {
            let t = now.checked_add_signed(offset).unwrap();
            let code = code_at(&secret(), t, &Params::default()).unwrap();
            let with_skew = verify(&secret(), &code, now, &Params::default(), None);
            assert_eq!(with_skew, Ok(t / 30));
            assert_ne!(t / 30, step);
            let strict = params(Algorithm::Sha1, 6, 0);
            assert_eq!(
                verify(&secret(), &code, now, &strict, None),
                Err(TotpError::Wrong)
            );
        }
    }

    #[test]
    fn two_steps_away_is_wrong_with_skew_one() {
        let now = 1_000_000_020;
        for t in [now - 60, now + 60] {
            let code = code_at(&secret(), t, &Params::default()).unwrap();
            assert_eq!(
                verify(&secret(), &code, now, &Params::default(), None),
                Err(TotpError::Wrong)
            );
        }
    }

    #[test]
    fn the_same_code_twice_is_a_replay() {
        let p = Params::default();
        let now = 1_700_000_000;
        let code = code_at(&secret(), now, &p).unwrap();
        let step = verify(&secret(), &code, now, &p, None).unwrap();
        assert_eq!(
            verify(&secret(), &code, now, &p, Some(step)),
            Err(TotpError::Replayed)
        );
        // Still a replay later in the skew window.
        assert_eq!(
            verify(&secret(), &code, now + 30, &p, Some(step)),
            Err(TotpError::Replayed)
        );
    }

    #[test]
    fn an_older_code_after_a_newer_one_is_a_replay() {
        let p = Params::default();
        let now = 1_700_000_000;
        let newer = code_at(&secret(), now, &p).unwrap();
        let older = code_at(&secret(), now - 30, &p).unwrap();
        let step = verify(&secret(), &newer, now, &p, None).unwrap();
        assert_eq!(
            verify(&secret(), &older, now, &p, Some(step)),
            Err(TotpError::Replayed)
        );
        // The next step's code is still welcome.
        let next = code_at(&secret(), now + 30, &p).unwrap();
        assert_eq!(
            verify(&secret(), &next, now + 30, &p, Some(step)),
            Ok(step + 1)
        );
    }

    #[test]
    fn a_wrong_code_is_wrong_not_replayed() {
        let p = Params::default();
        let now = 1_700_000_000;
        let good = code_at(&secret(), now, &p).unwrap();
        let bad = if good == "000000" { "000001" } else { "000000" };
        assert_eq!(
            verify(&secret(), bad, now, &p, Some(now / 30)),
            Err(TotpError::Wrong)
        );
    }

    #[test]
    fn malformed_codes_are_refused_before_checking() {
        let p = Params::default();
        let malformed = [
            "",
            " ",
            "12345",
            "1234567",
            "12345a",
            "abcdef",
            "12-456",
            "+12345",
            "١٢٣٤٥٦",
            "１２３４５６",
            "123456\u{a0}",
        ];
        for code in malformed {
            assert_eq!(
                verify(&secret(), code, 59, &p, None),
                Err(TotpError::Malformed),
                "{code:?}"
            );
        }
        let long = "1".repeat(10_000);
        assert_eq!(
            verify(&secret(), &long, 59, &p, None),
            Err(TotpError::Malformed)
        );
    }

    #[test]
    fn ascii_whitespace_in_a_code_is_ignored() {
        let p = Params::default();
        let now = 1_700_000_000;
        let code = code_at(&secret(), now, &p).unwrap();
        let (a, b) = code.split_at(3);
        for typed in [
            format!(" {code} \n"),
            format!("{a} {b}"),
            format!("\t{a}  {b}\r\n"),
        ] {
            assert_eq!(
                verify(&secret(), &typed, now, &p, None),
                Ok(now / 30),
                "{typed:?}"
            );
        }
    }

    #[test]
    fn bad_params_are_errors() {
        let code = "123456";
        for p in [
            Params {
                digits: 5,
                ..Params::default()
            },
            Params {
                digits: 9,
                ..Params::default()
            },
            Params {
                digits: u32::MAX,
                ..Params::default()
            },
            Params {
                period: 0,
                ..Params::default()
            },
        ] {
            assert_eq!(
                verify(&secret(), code, 59, &p, None),
                Err(TotpError::BadParams)
            );
            assert_eq!(code_at(&secret(), 59, &p), Err(TotpError::BadParams));
        }
    }

    #[test]
    fn extreme_clocks_periods_and_skews_do_not_panic() {
        let code = "123456";
        let wide = Params {
            skew: u8::MAX,
            ..Params::default()
        };
        let huge = Params {
            period: u64::MAX,
            skew: u8::MAX,
            ..Params::default()
        };
        for (now, p) in [(u64::MAX, wide), (0, wide), (u64::MAX, huge), (0, huge)] {
            let result = verify(&secret(), code, now, &p, Some(u64::MAX));
            assert!(matches!(
                result,
                Err(TotpError::Wrong | TotpError::Replayed)
            ));
        }
    }

    #[test]
    fn algorithm_names_parse_in_any_case() {
        assert_eq!("sha1".parse(), Ok(Algorithm::Sha1));
        assert_eq!("SHA256".parse(), Ok(Algorithm::Sha256));
        assert_eq!("Sha512".parse(), Ok(Algorithm::Sha512));
        assert_eq!("md5".parse::<Algorithm>(), Err(TotpError::BadParams));
        assert_eq!(Params::default(), params(Algorithm::Sha1, 6, 1));
    }

    #[test]
    fn secrets_generate_and_round_trip_through_base32() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_ne!(a, b);
        assert_eq!(a.0.len(), 20);
        assert_eq!(a.base32().len(), 32);
        assert_eq!(Secret::from_base32(&a.base32()), Ok(a.clone()));
        // As people copy it: lower case, grouped, padded.
        let typed = a.base32().to_lowercase();
        let (x, y) = typed.split_at(16);
        assert_eq!(Secret::from_base32(&format!("{x} {y}====")), Ok(a));
        assert_eq!(secret().base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn bad_base32_and_short_secrets_are_refused() {
        let bad = [
            "",
            "====",
            "GEZDGNBV",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ0",
            "GEZDGNBVGY3TQOJQ!EZDGNBV",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\u{e9}",
        ];
        for s in bad {
            assert_eq!(Secret::from_base32(s), Err(TotpError::BadSecret), "{s:?}");
        }
        assert_eq!(
            Secret::from_base32(&"A".repeat(100_000)),
            Err(TotpError::BadSecret)
        );
        assert_eq!(Secret::from_bytes(&[1u8; 15]), Err(TotpError::BadSecret));
        assert_eq!(Secret::from_bytes(&[1u8; 129]), Err(TotpError::BadSecret));
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let s = secret();
        let shown = format!("{s:?} {:?} {:#?}", Some(&s), vec![s.clone()]);
        assert!(!shown.contains(&s.base32()));
        assert!(!shown.contains("1234567890"));
        assert!(!shown.contains("49, 50, 51")); // the bytes of "123"
        assert!(!shown.contains(&hex::encode(SEED_SHA1)));
        assert_eq!(format!("{s:?}"), "Secret(..)");
        let err = Secret::from_base32("GEZDGNBVGY3TQOJQ!").unwrap_err();
        assert!(!format!("{err:?} {err}").contains("GEZD"));
    }

    #[test]
    fn sealed_secrets_open_with_the_same_key_and_aad_only() {
        let s = Secret::generate();
        let sealed = seal(&KEY, b"erp|alice", &s).unwrap();
        assert_eq!(sealed.len(), 12 + 20 + 16);
        assert_eq!(open(&KEY, b"erp|alice", &sealed), Ok(s.clone()));
        // A fresh nonce every time.
        assert_ne!(seal(&KEY, b"erp|alice", &s).unwrap(), sealed);
        assert_eq!(
            open(&[8u8; 32], b"erp|alice", &sealed),
            Err(TotpError::Crypto)
        );
        assert_eq!(open(&KEY, b"erp|bob", &sealed), Err(TotpError::Crypto));
        assert_eq!(open(&KEY, b"", &sealed), Err(TotpError::Crypto));
    }

    #[test]
    fn tampered_or_truncated_sealed_bytes_never_open() {
        let sealed = seal(&KEY, b"erp|alice", &secret()).unwrap();
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 0x01;
            assert_eq!(
                open(&KEY, b"erp|alice", &flipped),
                Err(TotpError::Crypto),
                "byte {i}"
            );
        }
        for len in 0..sealed.len() {
            assert_eq!(
                open(&KEY, b"erp|alice", &sealed[..len]),
                Err(TotpError::Crypto)
            );
        }
        let mut longer = sealed;
        longer.push(0);
        assert_eq!(open(&KEY, b"erp|alice", &longer), Err(TotpError::Crypto));
    }

    #[test]
    fn random_junk_never_panics() {
        let mut rng = OsRng;
        for len in 0..300 {
            let mut junk = vec![0u8; len];
            rng.fill_bytes(&mut junk);
            assert!(open(&KEY, b"x", &junk).is_err());
            let text = String::from_utf8_lossy(&junk);
            let _ = Secret::from_base32(&text);
            let _ = verify(
                &secret(),
                &text,
                rng.r#gen(),
                &Params::default(),
                rng.r#gen(),
            );
            assert_eq!(
                match_recovery(&KEY, &text, &[hash_recovery(&KEY, "abc")]),
                None
            );
        }
    }

    #[test]
    fn ten_distinct_recovery_codes_in_the_unambiguous_format() {
        // 15 symbols from an alphabet of 31: at least 60 bits each.
        assert_eq!(RECOVERY_ALPHABET.len(), 31);
        assert!(15.0 * 31f64.log2() >= 60.0);
        let codes = recovery_codes(10);
        assert_eq!(codes.len(), 10);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10);
        for code in &codes {
            let groups: Vec<&str> = code.split('-').collect();
            assert_eq!(groups.len(), 3, "{code}");
            for group in groups {
                assert_eq!(group.len(), 5);
                assert!(group.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)));
            }
            assert!(!code.contains(['0', 'o', 'O', '1', 'l', 'I', 'i']));
        }
        assert!(recovery_codes(0).is_empty());
    }

    #[test]
    fn recovery_codes_match_in_any_typed_form() {
        assert_eq!(
            hash_recovery(&KEY, "ABCD-efgh"),
            hash_recovery(&KEY, "abcdefgh")
        );
        assert_eq!(hash_recovery(&KEY, "abcdefgh").len(), 64);
        let codes = recovery_codes(10);
        let hashes: Vec<String> = codes.iter().map(|c| hash_recovery(&KEY, c)).collect();
        assert!(!hashes.iter().any(|h| h.contains(&codes[0])));
        let typed = format!(" {} ", codes[3].to_uppercase().replace('-', " "));
        assert_eq!(match_recovery(&KEY, &typed, &hashes), Some(3));
        assert_eq!(match_recovery(&KEY, &codes[9], &hashes), Some(9));
        assert_eq!(match_recovery(&KEY, "abcde-fghjk-mnpqr", &hashes), None);
        assert_eq!(match_recovery(&[9u8; 32], &codes[3], &hashes), None);
        assert_eq!(match_recovery(&KEY, "", &hashes), None);
        assert_eq!(
            match_recovery(&KEY, " - - ", &[hash_recovery(&KEY, "")]),
            None
        );
        assert_eq!(match_recovery(&KEY, &codes[3], &[]), None);
    }

    /// Splits an otpauth URI into (label, query pairs).
    fn parse_uri(uri: &str) -> (String, Vec<(String, String)>) {
        let rest = uri.strip_prefix("otpauth://totp/").unwrap();
        let (label, query) = rest.split_once('?').unwrap();
        let label: String = form_urlencoded::parse(format!("l={label}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let pairs = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        (label, pairs)
    }

    #[test]
    fn otpauth_uri_has_the_key_uri_format() {
        let uri = otpauth_uri(
            &secret(),
            "erpguard",
            "alice@example.com",
            &Params::default(),
        );
        assert_eq!(
            uri,
            "otpauth://totp/erpguard:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=erpguard&algorithm=SHA1&digits=6&period=30"
        );
        let p = Params {
            algorithm: Algorithm::Sha512,
            digits: 8,
            period: 60,
            skew: 1,
        };
        let uri = otpauth_uri(&secret(), "", "bob", &p);
        assert!(uri.starts_with("otpauth://totp/bob?secret="), "{uri}");
        assert!(
            uri.ends_with("&algorithm=SHA512&digits=8&period=60"),
            "{uri}"
        );
    }

    #[test]
    fn otpauth_uri_escapes_labels_and_parses_back() {
        let s = Secret::generate();
        let uri = otpauth_uri(&s, "ACME & Co: Gmbh", "a:b c+d@é.com", &Params::default());
        assert!(uri.is_ascii());
        assert_eq!(uri.matches(':').count(), 2, "{uri}"); // scheme and label separator only
        assert!(!uri.contains(' ') && !uri.contains('+'));
        let (label, pairs) = parse_uri(&uri);
        assert_eq!(label, "ACME & Co: Gmbh:a:b c+d@é.com");
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("issuer").as_deref(), Some("ACME & Co: Gmbh"));
        assert_eq!(get("digits").as_deref(), Some("6"));
        let back = Secret::from_base32(&get("secret").unwrap()).unwrap();
        assert_eq!(back, s);
        let code = code_at(&back, 1_700_000_000, &Params::default()).unwrap();
        assert!(verify(&s, &code, 1_700_000_000, &Params::default(), None).is_ok());
    }

    const URI: &str = "otpauth://totp/erpguard:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
                       &issuer=erpguard&algorithm=SHA1&digits=6&period=30";

    /// Decodes a greyscale image with a QR reader; returns the text.
    fn read_qr(width: usize, height: usize, pixel: impl Fn(usize, usize) -> u8) -> String {
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, pixel);
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1);
        grids[0].decode().unwrap().1
    }

    #[test]
    fn terminal_qr_is_square_with_a_light_quiet_zone_and_scans() {
        let text = qr_terminal(URI).unwrap();
        let lines: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
        let side = lines[0].len();
        assert!(lines.iter().all(|l| l.len() == side));
        assert_eq!(lines.len(), side.div_ceil(2)); // two modules a cell: square on screen
        // Quiet zone: the first two lines (four module rows) are all light.
        assert!(lines[..2].iter().flatten().all(|c| *c == '█'));
        // Read it back as a camera would: glyph ink is light, background dark.
        let light = |x: usize, y: usize| {
            let c = lines[y / 2][x];
            let ink = if y.is_multiple_of(2) {
                "▀█"
            } else {
                "▄█"
            };
            ink.contains(c)
        };
        let scale = 4;
        let decoded = read_qr(side * scale, side * scale, |x, y| {
            if light(x / scale, y / scale) { 255 } else { 0 }
        });
        assert_eq!(decoded, URI);
    }

    #[test]
    fn svg_qr_is_an_svg_document() {
        let svg = qr_svg(URI).unwrap();
        assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"));
        assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("#000000") && svg.contains("#ffffff"));
    }

    #[test]
    fn png_qr_decodes_with_eight_pixels_a_module_and_scans() {
        let bytes = qr_png(URI).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes))
            .read_info()
            .unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        let modules = qr(URI).unwrap().width() + 8;
        assert_eq!(
            (info.width, info.height),
            (modules as u32 * 8, modules as u32 * 8)
        );
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        let side = info.width as usize;
        assert!(pixels[..side * 8 * 4].iter().all(|p| *p == 255)); // quiet zone
        assert_eq!(read_qr(side, side, |x, y| pixels[y * side + x]), URI);
    }

    #[test]
    fn data_too_long_for_a_qr_code_is_an_error() {
        let long = "x".repeat(10_000);
        assert_eq!(qr_terminal(&long), Err(TotpError::Qr));
        assert_eq!(qr_svg(&long), Err(TotpError::Qr));
        assert_eq!(qr_png(&long), Err(TotpError::Qr));
    }
}
