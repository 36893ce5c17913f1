//! Loading the config: [`sluice_core::config`] parses and validates the text (no I/O), then
//! this load step reads the files the config names, adding their problems to the same report:
//! listener certificates (each `tls` block must load), the secrets of `auth` blocks (token and
//! password files, environment variables), and the `.wasm` files of built-in plugins. What
//! it reads ends up in the [`Config`]: credentials, resolved plugin paths.

mod secrets;

use std::path::Path;

pub use sluice_core::config::*;

/// Reads, validates and loads a config file.
pub fn load_file(path: &Path, overrides: &Overrides) -> Result<Config, ConfigErrors> {
    let source_name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        source_name: source_name.clone(),
        errors: vec![ConfigError {
            path: String::new(),
            message: format!("cannot read the config file: {e}"),
        }],
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load(&text, &source_name, &base, overrides)
}

/// The embedded defaults, with overrides applied, loaded.
pub fn load_embedded(overrides: &Overrides) -> Result<Config, ConfigErrors> {
    load_yaml(DEFAULT_CONFIG, "embedded defaults", overrides)
}

/// Config text, validated and loaded; relative paths are relative to the current directory.
pub fn load_yaml(
    text: &str,
    source_name: &str,
    overrides: &Overrides,
) -> Result<Config, ConfigErrors> {
    load(text, source_name, Path::new(""), overrides)
}

fn load(
    text: &str,
    source_name: &str,
    base: &Path,
    overrides: &Overrides,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut config = sluice_core::config::parse(text, base, overrides, &mut errors);
    if let Some(c) = &mut config {
        read_files(c, &mut errors);
    }
    match config {
        Some(c) if errors.is_empty() => Ok(c),
        _ => Err(ConfigErrors {
            source_name: source_name.to_string(),
            errors,
        }),
    }
}

/// The load step proper: everything validation left to the files.
fn read_files(c: &mut Config, errors: &mut Vec<ConfigError>) {
    let tls = |t: &TlsServerConfig, path: String, errors: &mut Vec<ConfigError>| {
        if let Err(e) = crate::tls::server_config(t) {
            err(errors, path, e.to_string());
        }
    };
    for r in &mut c.receivers {
        let path = format!("receivers.{}", r.name);
        if let ReceiverKind::Otlp(o) = &r.kind {
            for (at, t) in o.tls_blocks() {
                tls(t, format!("{path}.{at}"), errors);
            }
        }
        r.auth_tokens = secrets::tenant_credentials(r.tenants(), &format!("{path}.auth"), errors);
    }
    for p in &mut c.processors {
        if let Some(name) = &p.builtin {
            match builtin_plugin(name) {
                Ok(Builtin::File(path)) => p.path = path,
                Ok(Builtin::Embedded(bytes)) => {
                    p.path = format!("builtin/{name}").into();
                    p.embedded = Some(bytes);
                }
                Err(message) => err(errors, format!("processors.{}.plugin", p.name), message),
            }
        }
    }
    for e in &mut c.exporters {
        let path = format!("exporters.{}", e.name);
        if let ExporterKind::Prometheus(p) = &e.kind {
            if let Some(t) = &p.tls {
                tls(t, format!("{path}.tls"), errors);
            }
            if let Some(a) = &p.auth {
                e.endpoint_auth = secrets::endpoint_credentials(a, &format!("{path}.auth"), errors);
            }
        }
    }
    if let Some(t) = &c.admin_tls {
        tls(t, "service.admin.tls".into(), errors);
    }
    if let Some(a) = &c.admin_auth_config {
        c.admin_auth = secrets::endpoint_credentials(a, "service.admin.auth", errors);
    }
}

/// The built-in plugins compiled into the binary by the build script.
pub mod embedded {
    include!(concat!(env!("OUT_DIR"), "/builtins.rs"));
}

/// The directories that hold plugins overriding the embedded built-ins, in order:
/// `$SLUICE_PLUGIN_DIR`, `plugins/` beside the executable, `/usr/lib/sluice/plugins`; and for a
/// binary built without embedded plugins, the build directory of a checkout
/// (`target/wasm32-wasip2/release`).
pub fn builtin_plugin_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("SLUICE_PLUGIN_DIR") {
        dirs.push(std::path::PathBuf::from(d));
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    if let Some(exe_dir) = &exe_dir {
        dirs.push(exe_dir.join("plugins"));
    }
    dirs.push("/usr/lib/sluice/plugins".into());
    if let (Some(exe_dir), true) = (&exe_dir, embedded::EMBEDDED.is_empty()) {
        dirs.push(exe_dir.join("../wasm32-wasip2/release"));
        dirs.push(exe_dir.join("../../wasm32-wasip2/release"));
    }
    dirs
}

/// Where `builtin/NAME` comes from: a file in one of [`builtin_plugin_dirs`], else the copy
/// embedded in the binary.
enum Builtin {
    File(std::path::PathBuf),
    Embedded(&'static [u8]),
}

fn builtin_plugin(name: &str) -> Result<Builtin, String> {
    let dirs = builtin_plugin_dirs();
    let candidates = [format!("{name}.wasm"), format!("sluice_plugin_{name}.wasm")];
    if let Some(file) = dirs
        .iter()
        .flat_map(|d| candidates.iter().map(move |c| d.join(c)))
        .find(|p| p.is_file())
    {
        return Ok(Builtin::File(file));
    }
    if let Some((_, bytes)) = embedded::EMBEDDED.iter().find(|(n, _)| *n == name) {
        return Ok(Builtin::Embedded(bytes));
    }
    let mut known: Vec<&str> = embedded::EMBEDDED.iter().map(|(n, _)| *n).collect();
    known.sort_unstable();
    let searched = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err(match embedded::NOT_EMBEDDED {
        None => format!(
            "there is no built-in plugin `{name}` (built in: {}) and no {name}.wasm in {searched}",
            known.join(", ")
        ),
        Some(why) => format!(
            "built-in plugin `{name}` not found in {searched}, and this binary was {why}; build the plugins with scripts/build-plugins.sh or set SLUICE_PLUGIN_DIR"
        ),
    })
}
