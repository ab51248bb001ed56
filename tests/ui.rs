//! Compile-time diagnostics of the derives and the `handler`, `listener`, `process_manager`
//! and `projection` attributes (trybuild).
//!
//! Each file under `tests/ui/<macro>/` is one minimal mistake, with the compiler output a user
//! should see next to it in a `.stderr` file; `tests/ui/pass/` holds correct uses that must
//! keep compiling. The expectations are pinned to the stable toolchain named by
//! `rust-version`; after an intended change, regenerate them with
//! `TRYBUILD=overwrite cargo test --test ui` and read every changed `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/serializable-value/*.rs");
    t.compile_fail("tests/ui/entity/*.rs");
    t.compile_fail("tests/ui/domain-event/*.rs");
    t.compile_fail("tests/ui/aggregate/*.rs");
    t.compile_fail("tests/ui/command/*.rs");
    t.compile_fail("tests/ui/handler/*.rs");
    t.compile_fail("tests/ui/personal-data/*.rs");
    t.compile_fail("tests/ui/consumer/*.rs");
}
