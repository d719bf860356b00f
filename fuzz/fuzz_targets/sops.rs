//! sops files as a hostile committer writes them.
//!
//! Input: the text of a repo YAML file, sealed or not.
//!
//! Checked: opening it with the demo key never panics (an error is fine);
//! `.sops.yaml` rules never panic; and a file that seals (its `secrets`
//! for the demo recipient) opens again with the same values at the same
//! pointers.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pacer::sops::{self, Identities, IdentitySources, Rules};
use std::sync::LazyLock;

const DEMO_RECIPIENT: &str = "age1mjlh8y6esazugpmj07mue9mmuhmaypl3huj39qjmj79hhd87yqaqqhhytx";

static DEMO: LazyLock<Identities> = LazyLock::new(|| {
    Identities::load(&IdentitySources {
        demo: true,
        ..IdentitySources::default()
    })
    .expect("the demo key loads")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = sops::file::open(text, &DEMO);
    let _ = Rules::parse(text);
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let Ok(sealed) = sops::encrypt(text, &[DEMO_RECIPIENT.to_string()], "^secrets$", now) else {
        return;
    };
    let opened = match sops::file::open(&sealed, &DEMO) {
        Ok(Some(o)) => o,
        Ok(None) => return,
        Err(e) => panic!("pacer's own sealed file does not open: {e}\n{sealed}"),
    };
    // Every value sealed is there again, under the pointer it had.
    if let Ok(Some(plain)) = sops::file::open(text, &DEMO) {
        let a: Vec<&str> = plain.values.iter().map(|v| v.pointer.as_str()).collect();
        let b: Vec<&str> = opened.values.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(a, b);
    }
});
