//! Passwords.

use super::*;

#[test]
fn wrong_or_missing_password() {
    let d = tmp();
    let data = mixed(300_000, 4);
    let (out, _) = pack_ok(
        &d,
        "w.hxz",
        Some(&data),
        None,
        &PackOptions {
            encryption: enc("correct horse"),
            ..PackOptions::default()
        },
    );
    let e = open_pw(&out, "correct hors").unwrap_err();
    assert!(matches!(e, Error::WrongPassword), "{e:?}");
    assert_eq!(e.to_string(), "wrong password or not a hexz key");
    assert!(matches!(open_pw(&out, ""), Err(Error::WrongPassword)));
    let e = File::open(&out).unwrap_err();
    assert!(matches!(e, Error::PasswordRequired(_)), "{e:?}");
    let m = e.to_string();
    assert!(m.contains("w.hxz") && m.contains("is encrypted"), "{m}");
    assert!(m.contains("HEXZ_PASSWORD"), "{m}");
    // A password given for an unencrypted archive is simply unused.
    let (plain, _) = pack_ok(&d, "u.hxz", Some(&data), None, &PackOptions::default());
    assert!(read_all(&open_pw(&plain, "anything").unwrap(), DISK).unwrap() == data);
}
