//! Records the git commit and the build date for `sluice --version` and `sluice_build_info`, and
//! builds the built-in plugins (`plugins/*`) as wasm32-wasip2 components to embed them in the
//! binary, so `plugin: builtin/NAME` needs no plugin directory at run time.
//!
//! The plugins are built by a second cargo in their own target directory
//! (`target/builtin-plugins`, shared with `scripts/build-plugins.sh`), with the plugins' release
//! settings (whole-program optimisation, no debug info: a tenth of the size). `SLUICE_EMBED_PLUGINS=0` skips it: the binary then
//! finds built-ins only on disk. Without the wasm32-wasip2 target (the checkout's
//! `rust-toolchain.toml` asks rustup for it) the build goes on without them and says so.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SLUICE_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=SLUICE_BUILD_DATE={date}");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    embed_plugins();
}

const TARGET: &str = "wasm32-wasip2";

fn embed_plugins() {
    for watched in ["../plugins", "../sdk", "../lib/wire", "../Cargo.lock"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    println!("cargo:rerun-if-env-changed=SLUICE_EMBED_PLUGINS");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway lives in the workspace")
        .to_path_buf();
    let plugins = builtin_packages(&root);
    let result = if std::env::var("SLUICE_EMBED_PLUGINS").is_ok_and(|v| v == "0") {
        Err("built without them (SLUICE_EMBED_PLUGINS=0)".to_string())
    } else if !target_installed() {
        println!(
            "cargo:warning=the {TARGET} target is missing (rustup target add {TARGET}): the built-in plugins are not embedded"
        );
        Err(format!(
            "built without them (the {TARGET} target was missing)"
        ))
    } else {
        build(&root, &plugins, &out);
        Ok(())
    };
    let mut code = String::from(
        "/// The built-in plugins compiled into this binary: `(NAME, component)`.\npub static EMBEDDED: &[(&str, &[u8])] = &[\n",
    );
    if result.is_ok() {
        for (name, _) in &plugins {
            code.push_str(&format!(
                "    ({name:?}, include_bytes!(concat!(env!(\"OUT_DIR\"), \"/sluice_plugin_{name}.wasm\"))),\n"
            ));
        }
    }
    code.push_str("];\n");
    code.push_str(&format!(
        "/// Why [`EMBEDDED`] is empty, if it is.\npub static NOT_EMBEDDED: Option<&str> = {:?};\n",
        result.err()
    ));
    std::fs::write(out.join("builtins.rs"), code).expect("OUT_DIR is writable");
}

/// `(NAME, package)` of each `plugins/NAME`.
fn builtin_packages(root: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let dirs = std::fs::read_dir(root.join("plugins")).expect("plugins/ is readable");
    for entry in dirs.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let package = text.lines().find_map(|l| {
            let value = l.trim().strip_prefix("name")?.trim().strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_string())
        });
        if let Some(package) = package {
            found.push((entry.file_name().to_string_lossy().into_owned(), package));
        }
    }
    found.sort();
    found
}

fn target_installed() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let has = || {
        Command::new(&rustc)
            .args(["--print", "target-libdir", "--target", TARGET])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .is_some_and(|dir| Path::new(dir.trim()).is_dir())
    };
    if has() {
        return true;
    }
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success());
    added && has()
}

/// Builds the plugins with a clean environment: nothing of this build (its flags, a clippy
/// wrapper, the host target) may leak into theirs.
fn build(root: &Path, plugins: &[(String, String)], out: &Path) {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("builtin-plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.env_clear();
    for kept in [
        "PATH",
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "CARGO_MAKEFLAGS",
        "TMPDIR",
        "CARGO_NET_OFFLINE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
    ] {
        if let Some(v) = std::env::var_os(kept) {
            command.env(kept, v);
        }
    }
    command
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        .current_dir(root)
        .args(["build", "--release", "--target", TARGET]);
    for (_, package) in plugins {
        command.args(["-p", package]);
    }
    let output = command.output().expect("cargo runs");
    if !output.status.success() {
        panic!(
            "building the built-in plugins failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    for (name, _) in plugins {
        let file = format!("sluice_plugin_{name}.wasm");
        let built = target_dir.join(TARGET).join("release").join(&file);
        std::fs::copy(&built, out.join(&file))
            .unwrap_or_else(|e| panic!("{}: {e}", built.display()));
    }
}
