//! The README's complete example is `examples/vouchers.rs`, word for word.

#[test]
fn the_readme_example_is_the_vouchers_example() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example = std::fs::read_to_string(format!("{root}/examples/vouchers.rs")).unwrap();
    assert!(
        readme.contains(example.trim_end()),
        "README.md must hold examples/vouchers.rs verbatim; copy it again after editing either"
    );
}
