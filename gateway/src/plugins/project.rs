//! Plugin projects in any of the SDK languages: `sluice plugin build` and `sluice plugin test`
//! run on a project directory call each language's own tools (cargo, componentize-py through
//! the Python SDK, componentize-js through the JavaScript SDK), and say what to install when
//! one is missing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The languages a plugin project can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    /// The language of the project in `dir`, from its manifest.
    pub fn of_project(dir: &Path) -> Result<Lang, String> {
        if dir.join("Cargo.toml").is_file() {
            Ok(Lang::Rust)
        } else if dir.join("pyproject.toml").is_file() {
            Ok(Lang::Python)
        } else if dir.join("package.json").is_file() {
            Ok(Lang::Js)
        } else {
            Err(format!(
                "{} is not a plugin project: it has no Cargo.toml, pyproject.toml or package.json \
                 (create one with `sluice plugin new NAME --lang rust|python|js`)",
                dir.display()
            ))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }
}

/// The Python interpreter: `SLUICE_PYTHON`, else `python3`.
fn python() -> OsString {
    std::env::var_os("SLUICE_PYTHON").unwrap_or_else(|| "python3".into())
}

/// `PYTHONPATH` with the SDK's Python package first, when a checkout's SDK is known, so a
/// project builds and tests against the SDK beside the gateway even before `pip install`.
fn python_path(sdk: Option<&Path>) -> Option<OsString> {
    let package = sdk?.join("python");
    if !package.join("sluice_plugin/__init__.py").is_file() {
        return None;
    }
    let mut paths = vec![package];
    if let Some(existing) = std::env::var_os("PYTHONPATH") {
        paths.extend(std::env::split_paths(&existing));
    }
    std::env::join_paths(paths).ok()
}

fn command(program: impl Into<OsString>, dir: &Path, sdk: Option<&Path>) -> Command {
    let mut c = Command::new(program.into());
    c.current_dir(dir);
    if let Some(p) = python_path(sdk) {
        c.env("PYTHONPATH", p);
    }
    c
}

/// What to install when `program` cannot be started.
fn missing(lang: Lang, program: &str, e: &std::io::Error) -> String {
    let hint = match lang {
        Lang::Rust => "install Rust (https://rustup.rs), then `rustup target add wasm32-wasip2`",
        Lang::Python => "install Python 3.11 or later (`python3`), or set SLUICE_PYTHON",
        Lang::Js => "install Node.js 20 or later with npm",
    };
    format!("cannot run `{program}` ({e}): {hint}")
}

/// Builds the plugin project in `dir`; returns the component's path. The tools' own progress
/// goes to this process's stderr.
pub fn build(dir: &Path, sdk: Option<&Path>) -> Result<PathBuf, String> {
    let lang = Lang::of_project(dir)?;
    let (program, out) = match lang {
        Lang::Rust => {
            let out = command("cargo", dir, sdk)
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--message-format=json-render-diagnostics",
                ])
                .stderr(Stdio::inherit())
                .output();
            ("cargo", out)
        }
        Lang::Python => {
            let mut c = command(python(), dir, sdk);
            c.args(["-m", "sluice_plugin.build", "."])
                .stderr(Stdio::inherit());
            ("python3", c.output())
        }
        Lang::Js => {
            if !dir.join("node_modules").is_dir() {
                return Err(format!(
                    "{} has no node_modules: run `npm install` there first (it installs the \
                     Sluice SDK and componentize-js)",
                    dir.display()
                ));
            }
            let out = command("npm", dir, sdk)
                .args(["run", "--silent", "build"])
                .stderr(Stdio::inherit())
                .output();
            ("npm", out)
        }
    };
    let out = out.map_err(|e| missing(lang, program, &e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let hint = if lang == Lang::Python && stdout.is_empty() {
            "\n(if `sluice_plugin` is not found: `pip install` the sdk/python directory of a \
             Sluice checkout, or run from inside one)"
        } else {
            ""
        };
        return Err(format!(
            "the {} build failed ({}){}{hint}",
            lang.name(),
            out.status,
            if lang == Lang::Rust {
                String::new()
            } else {
                format!(":\n{stdout}")
            }
        ));
    }
    let path = match lang {
        Lang::Rust => stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact")
            .flat_map(|v| {
                v["filenames"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|f| f.as_str().map(PathBuf::from))
                    .collect::<Vec<_>>()
            })
            .rfind(|f| f.extension().is_some_and(|e| e == "wasm")),
        Lang::Python | Lang::Js => stdout
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(PathBuf::from),
    };
    match path {
        Some(p) if p.is_file() => Ok(p),
        Some(p) => Err(format!(
            "the {} build named {}, which does not exist",
            lang.name(),
            p.display()
        )),
        None => Err(format!(
            "the {} build succeeded but named no .wasm component",
            lang.name()
        )),
    }
}

/// Runs the project's own tests (`cargo test`, `pytest`, `npm test`) with all their output on
/// this process's stderr (stdout stays for the batch `sluice plugin test` prints); returns
/// whether they passed.
pub fn run_tests(dir: &Path, sdk: Option<&Path>) -> Result<bool, String> {
    let lang = Lang::of_project(dir)?;
    let (program, mut runner) = match lang {
        Lang::Rust => {
            let mut c = command("cargo", dir, sdk);
            c.args(["test", "--quiet"]);
            ("cargo", c)
        }
        Lang::Python => {
            let probe = command(python(), dir, sdk)
                .args(["-c", "import pytest"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| missing(lang, "python3", &e))?;
            if !probe.success() {
                return Err("pytest is not installed: pip install pytest".into());
            }
            let mut c = command(python(), dir, sdk);
            c.args(["-m", "pytest", "-q", "-p", "no:cacheprovider"]);
            ("python3", c)
        }
        Lang::Js => {
            let mut c = command("npm", dir, sdk);
            c.arg("test");
            ("npm", c)
        }
    };
    let status = runner
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| missing(lang, program, &e))?;
    eprintln!(
        "{} tests {}",
        lang.name(),
        if status.success() { "passed" } else { "failed" }
    );
    Ok(status.success())
}
