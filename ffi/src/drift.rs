//! The header drift test: `include/farmem.h` and this crate must declare the same functions,
//! structs, typedefs and constants.
//!
//! Two halves, so that neither side can move alone:
//!
//! 1. **Header → check file** (run time, needs libclang): bindgen reads `include/farmem.h`;
//!    [`check_file`] turns its output into Rust source that asserts every declaration against
//!    this crate -- a `let _: unsafe extern "C" fn(<C's parameter types>) -> <C's return type>
//!    = crate::fm_x;` per function, bindgen's own size/alignment/offset assertions per struct
//!    plus one type check per field, an identity function per typedef, an `assert!` per
//!    constant. The test fails if that source differs from the committed
//!    `src/drift/farmem_h_check.rs` (`FARMEM_BLESS=1` rewrites it).
//! 2. **Check file → Rust** (compile time): the committed file is compiled into this test
//!    build (module `check` below, where C's type names resolve to `abi.rs`), so a Rust
//!    signature, field or constant that differs from the header fails to compile.
//!
//! Plus the reverse direction: every `extern "C" fn fm_*` in `src/` must be in the header.
//! Without libclang, half 1 fails unless `FARMEM_SKIP_BINDGEN=1` is set, in which case it says
//! why it skipped; halves 2 and the reverse check run anyway.

use std::path::{Path, PathBuf};

#[allow(dead_code, clippy::all, unused_imports, non_upper_case_globals)]
mod check {
    use crate::abi::*;
    include!("drift/farmem_h_check.rs");
}

fn header() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../include/farmem.h")
}

fn check_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/drift/farmem_h_check.rs")
}

/// bindgen's reading of the header, or why there is none.
fn bindgen_output() -> Result<String, String> {
    let header = header();
    let run = std::panic::catch_unwind(|| {
        bindgen::Builder::default()
            .header(header.to_string_lossy())
            .allowlist_item("fm_.*|FM_.*")
            .generate_comments(false)
            .layout_tests(true)
            .derive_copy(false)
            .derive_debug(false)
            .generate()
    });
    match run {
        Ok(Ok(b)) => Ok(b.to_string()),
        Ok(Err(e)) => Err(format!("bindgen failed: {e}")),
        Err(p) => Err(format!(
            "bindgen panicked (is libclang installed? apt-get install -y libclang-dev): {}",
            crate::boundary::panic_message(&*p)
        )),
    }
}

/// The items of bindgen's output, each as one whitespace-normalised string ending at its `;`
/// or closing brace.
fn items(src: &str) -> Vec<String> {
    // Comments (bindgen's banner) go first; bindgen output has none inside string literals.
    let mut uncommented = String::new();
    let mut rest = src;
    while let Some(i) = rest.find("/*") {
        uncommented.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    uncommented.push_str(rest);
    let text: String = uncommented
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'(' | b'[' => depth += 1,
            b'}' | b')' | b']' => {
                depth -= 1;
                // A closing brace at depth 0 ends an item unless `;` follows (`const _: () = { };`).
                if depth == 0 && bytes[i] == b'}' && !text[i + 1..].trim_start().starts_with(';') {
                    out.push(text[start..=i].trim().to_string());
                    start = i + 1;
                }
            }
            b';' if depth == 0 => {
                out.push(text[start..=i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The parameter types of a `name: Type, ...` list.
fn param_types(params: &str) -> Vec<String> {
    let mut types = Vec::new();
    let (mut depth, mut cur) = (0i32, String::new());
    for c in params.chars() {
        match c {
            '(' | '<' | '[' => depth += 1,
            ')' | '>' | ']' => depth -= 1,
            _ => {}
        }
        if c == ',' && depth == 0 {
            types.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    types.push(cur);
    types
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| match p.split_once(':') {
            Some((_, t)) if !p.trim_start().starts_with("::") => t.trim().to_string(),
            _ => p.trim().to_string(),
        })
        .collect()
}

/// `item` without its leading `#[...]` attributes.
fn strip_attributes(mut item: &str) -> &str {
    while let Some(rest) = item.strip_prefix("#[") {
        let mut depth = 1;
        let end = rest.char_indices().find_map(|(i, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        });
        match end {
            Some(i) => item = rest[i + 1..].trim_start(),
            None => break,
        }
    }
    item
}

/// [`items`] without attributes, with the declarations of `extern "C"` blocks in place of the
/// blocks.
fn flat_items(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for item in items(src) {
        let item = strip_attributes(&item);
        let block = ["unsafe extern \"C\" {", "extern \"C\" {"]
            .iter()
            .find_map(|p| item.strip_prefix(p));
        match block {
            Some(inner) => out.extend(flat_items(inner.trim_end().trim_end_matches('}'))),
            None => out.push(item.to_string()),
        }
    }
    out
}

/// The check file (see the module note) for bindgen output `src`.
fn check_file(src: &str) -> String {
    let mut functions = Vec::new();
    let mut out = String::from(
        "// @generated by ffi/src/drift.rs from include/farmem.h: do not edit.\n\
         // Regenerate: FARMEM_BLESS=1 cargo test -p farmem-ffi drift\n\n",
    );
    let mut body = String::new();
    for item in flat_items(src) {
        let item = item.as_str();
        if let Some(rest) = item.strip_prefix("pub fn ") {
            let (name, rest) = rest.split_once('(').unwrap_or((rest, ""));
            let close = rest.rfind(')').unwrap_or(0);
            let params = param_types(&rest[..close]).join(", ");
            let ret = rest[close + 1..]
                .trim()
                .trim_end_matches(';')
                .trim()
                .trim_end_matches('}')
                .trim();
            let ret = ret.strip_prefix("->").map(str::trim).unwrap_or("()");
            body.push_str(&format!(
                "    let _: unsafe extern \"C\" fn({params}) -> {ret} = crate::{name};\n"
            ));
            functions.push(name.trim().to_string());
        } else if let Some(rest) = item.strip_prefix("pub const ") {
            let (name, rest) = rest.split_once(':').unwrap_or((rest, ""));
            let (ty, value) = rest.split_once('=').unwrap_or((rest, ""));
            out.push_str(&format!(
                "const _: {} = crate::{name};\nconst _: () = assert!(crate::{name} == {});\n",
                ty.trim(),
                value.trim().trim_end_matches(';').trim()
            ));
        } else if let Some(rest) = item.strip_prefix("pub type ") {
            let (name, ty) = rest.split_once('=').unwrap_or((rest, ""));
            out.push_str(&format!(
                "const _: fn({}) -> {} = |x| x;\n",
                ty.trim().trim_end_matches(';').trim(),
                name.trim()
            ));
        } else if let Some(rest) = item.strip_prefix("pub struct ") {
            let (name, fields) = rest.split_once('{').unwrap_or((rest, ""));
            let fields = fields.trim().trim_end_matches('}');
            let name = name.trim();
            let mut checks = String::new();
            for field in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                let Some((fname, fty)) = field.trim_start_matches("pub ").split_once(':') else {
                    continue;
                };
                if fname.trim() == "_unused" {
                    // An opaque handle type: C cannot see inside it.
                    checks.clear();
                    break;
                }
                checks.push_str(&format!(
                    "    let _: &{} = &v.{};\n",
                    fty.trim(),
                    fname.trim()
                ));
            }
            if !checks.is_empty() {
                out.push_str(&format!(
                    "fn _fields_of_{name}(v: &{name}) {{\n{checks}}}\n"
                ));
            }
        } else if item.starts_with("const _: () =") {
            out.push_str(item);
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "\n/// Every function the header declares, in order.\npub(super) const FUNCTIONS: &[&str] = &[\n{}];\n",
        functions.iter().map(|f| format!("    \"{f}\",\n")).collect::<String>()
    ));
    out.push_str(&format!(
        "\n/// Each header declaration against the Rust export of the same name.\npub(super) fn signatures() {{\n{body}}}\n"
    ));
    out
}

/// The `extern "C" fn fm_*` names defined in this crate's sources.
fn rust_exports() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut names = Vec::new();
    let entries = std::fs::read_dir(&dir).expect("reading ffi/src");
    for entry in entries {
        let path = entry.expect("listing ffi/src").path();
        // This file's test data mentions names too.
        if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("drift.rs") {
            let text = std::fs::read_to_string(&path).expect("reading a source file");
            for part in text.split("extern \"C\" fn ").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if name.starts_with("fm_") && name.len() > 3 {
                    names.push(name);
                }
            }
        }
    }
    names.sort();
    names
}

#[test]
fn drift_header_matches_the_committed_check_file() {
    let generated = match bindgen_output() {
        Ok(src) => check_file(&src),
        Err(why) if std::env::var_os("FARMEM_SKIP_BINDGEN").is_some() => {
            println!("skipping the header drift check (FARMEM_SKIP_BINDGEN is set): {why}");
            return;
        }
        Err(why) => panic!("{why}\n(set FARMEM_SKIP_BINDGEN=1 to skip this check)"),
    };
    let path = check_path();
    if std::env::var_os("FARMEM_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("writing the check file");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/farmem.h no longer matches {}: review the change, then regenerate with \
         FARMEM_BLESS=1 cargo test -p farmem-ffi drift (a compile error after that names the \
         Rust item that differs)",
        path.display()
    );
}

#[test]
fn drift_rust_exports_and_header_functions_are_the_same_set() {
    let mut header: Vec<String> = check::FUNCTIONS.iter().map(|s| s.to_string()).collect();
    header.sort();
    let rust = rust_exports();
    let missing_in_header: Vec<_> = rust.iter().filter(|n| !header.contains(n)).collect();
    let missing_in_rust: Vec<_> = header.iter().filter(|n| !rust.contains(n)).collect();
    assert!(
        missing_in_header.is_empty() && missing_in_rust.is_empty(),
        "exported but not in include/farmem.h: {missing_in_header:?}; declared but not \
         exported: {missing_in_rust:?}"
    );
    // The signature checks are compiled in; calling the function keeps it from being dead code.
    check::signatures();
}

#[test]
fn drift_the_check_file_generator_reads_each_kind_of_item() {
    let src = r#"
        /* automatically generated by rust-bindgen */
        // a line comment
        pub const FM_OK: u32 = 0;
        pub type fm_status_t = u32;
        #[repr(C)]
        pub struct fm_pair { pub key: u64, pub count: u64, }
        const _: () = { ["Size of fm_pair"][::std::mem::size_of::<fm_pair>() - 16usize]; };
        unsafe extern "C" {
            pub fn fm_f(a: *mut fm_x_t, n: usize) -> fm_status_t;
            pub fn fm_g(cb: ::std::option::Option<unsafe extern "C" fn(arg: *mut ::std::os::raw::c_void) -> ::std::os::raw::c_int>);
        }
    "#;
    let out = check_file(src);
    assert!(
        out.contains("const _: () = assert!(crate::FM_OK == 0);"),
        "{out}"
    );
    assert!(
        out.contains("const _: fn(u32) -> fm_status_t = |x| x;"),
        "{out}"
    );
    assert!(out.contains("let _: &u64 = &v.count;"), "{out}");
    assert!(out.contains("size_of::<fm_pair>() - 16usize"), "{out}");
    assert!(
        out.contains(
            "let _: unsafe extern \"C\" fn(*mut fm_x_t, usize) -> fm_status_t = crate::fm_f;"
        ),
        "{out}"
    );
    assert!(
        out.contains("fn(::std::option::Option<unsafe extern \"C\" fn(arg: *mut ::std::os::raw::c_void) -> ::std::os::raw::c_int>) -> () = crate::fm_g;"),
        "{out}"
    );
    assert!(out.contains("\"fm_f\",\n    \"fm_g\","), "{out}");
}
