//! `sluice`: parse the command line, load the config, run. Exit 64 on a bad config.

mod cmd;

use std::process::ExitCode;

use clap::Parser;
use cmd::cli::{Cli, Command, PluginCommand, RunArgs, SloCommand};
use sluice::config::{Config, ConfigErrors};
use sluice::plugins::tool;
use tokio_util::sync::CancellationToken;

/// mimalloc instead of the system allocator: a batch is decoded on one thread and freed on
/// another, which glibc's malloc pays for in arena locks and consolidation (about 40 % of the
/// gateway's CPU on metrics ingest), and it spreads a saturated gateway over many arenas.
/// Built without transparent huge pages (`no_thp`): with them a passthrough gateway at
/// saturation held 102-112 MiB resident instead of 86-89 MiB, for the same throughput.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (15 in both mimalloc 2 and 3).
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// The load generator keeps the memory it frees instead of giving it back to the system 10 ms
/// later: its own pauses returning and faulting in the pages of 1000-record requests showed
/// up as 7-9 ms outliers in the latencies it measures (p99 at half saturation; 3-3.6 ms
/// without them). A run is bounded, so its memory is too.
fn keep_freed_memory() {
    #[cfg(feature = "mimalloc")]
    #[allow(
        unsafe_code,
        reason = "mimalloc's options are only reachable through its C interface"
    )]
    // SAFETY: `mi_option_set` stores one integer option; it takes no pointers and may be
    // called at any time from any thread.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1)
    };
}

/// sysexits' EX_CONFIG-adjacent EX_USAGE, as the design asks for bad configuration.
const EXIT_BAD_CONFIG: u8 = 64;

fn load(args: &RunArgs) -> Result<Config, ConfigErrors> {
    let overrides = args.overrides();
    match &args.config {
        Some(path) => sluice::config::load_file(path, &overrides),
        None => sluice::config::load_embedded(&overrides),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Plugin { command } => plugin(command),
        Command::Tap(args) => tap(&args),
        Command::Loadgen(args) => {
            keep_freed_memory();
            loadgen(&args)
        }
        Command::Slo {
            command: SloCommand::Rules { config },
        } => {
            let rules = std::fs::read_to_string(&config)
                .map_err(|e| format!("{}: {e}", config.display()))
                .and_then(|text| sluice::slo::slos_in_gateway_config(&text))
                .and_then(|slos| {
                    if slos.is_empty() {
                        Err(format!(
                            "{}: no SLOs (processors.*.config.slos)",
                            config.display()
                        ))
                    } else {
                        sluice::slo::rules(&slos)
                    }
                });
            match rules {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
            }
        }
        Command::Validate(args) => match load(&args) {
            Ok(c) => {
                let problems = sluice::plugins::tool::load_all(&c);
                if !problems.is_empty() {
                    eprintln!("{} plugin error(s):", problems.len());
                    for p in problems {
                        eprintln!("  - {p}");
                    }
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
                println!(
                    "{}: valid ({} receivers, {} exporters, {} pipelines)",
                    args.config
                        .as_ref()
                        .map_or("embedded defaults".into(), |p| p.display().to_string()),
                    c.receivers.len(),
                    c.exporters.len(),
                    c.pipelines.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Run(args) => {
            // A long-lived gateway keeps what a compiler frees: large plugins are compiled by a
            // short-lived child instead (when the plugin cache is on).
            sluice::plugins::compile_large_components_in_a_child();
            let config = match load(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            let telemetry =
                match sluice::telemetry::init(&config.logs, config.traces_endpoint.as_deref()) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(EXIT_BAD_CONFIG);
                    }
                };
            let watch = if args.watch_config {
                args.config.clone()
            } else {
                None
            };
            let reload = sluice::gateway::ReloadSource {
                load: std::sync::Arc::new(move || load(&args).map_err(|e| e.to_string())),
                watch,
            };
            let result = run(config, reload);
            drop(telemetry);
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "Sluice stopped with an error.");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// A runtime for a subcommand, or the failure it exits with (said on stderr).
fn runtime(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

/// Exit 0 once the tap ends (limit, time or a closed output), 1 when it could not start.
fn tap(args: &cmd::tap::TapArgs) -> ExitCode {
    let runtime = match runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(cmd::tap::run(args)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Exit 0 when the target accepted records, 1 when it accepted none (or the run failed).
fn loadgen(args: &cmd::loadgen::LoadgenArgs) -> ExitCode {
    let runtime = match runtime(tokio::runtime::Builder::new_multi_thread()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(cmd::loadgen::run(args)) {
        Ok(summary) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).unwrap_or_default()
                );
            } else {
                print!("{}", cmd::loadgen::table(&summary));
            }
            if summary.accepted_records > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

fn plugin(command: PluginCommand) -> ExitCode {
    use sluice::plugins::project::{self, Lang};
    let fail = |e: String| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    };
    match command {
        PluginCommand::New {
            name,
            lang,
            sdk,
            dir,
        } => {
            let created = match (tool::find_sdk(sdk.as_deref()), sdk.is_some()) {
                // An SDK named on the command line must be usable, whatever the language.
                (Err(e), true) => Err(e),
                (found, _) => tool::scaffold(&name, lang, &dir, found),
            };
            match created {
                Ok(path) => {
                    println!("Created {} ({}).", path.display(), lang.name());
                    println!("  cd {}", path.display());
                    if lang == Lang::Js {
                        println!("  npm install");
                    }
                    println!(
                        "  sluice plugin test     # its tests, then its component on batch.json"
                    );
                    println!("  sluice plugin build    # prints the path of the .wasm");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        PluginCommand::Precompile { plugin, cache_dir } => {
            let compiled = sluice::plugins::PluginEngine::new(Some(cache_dir))
                .map_err(|e| format!("{e:#}"))
                .and_then(|engine| engine.compile(&plugin).map_err(|e| e.to_string()));
            match compiled {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        PluginCommand::Build { dir, sdk } => {
            let sdk = tool::find_sdk(sdk.as_deref()).ok();
            let built = project::build(&dir, sdk.as_deref())
                .and_then(|wasm| tool::check_component(&wasm, "{}").map(|about| (wasm, about)));
            match built {
                Ok((wasm, about)) => {
                    eprintln!("built {about}");
                    println!("{}", wasm.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        PluginCommand::Test {
            plugin,
            input,
            sdk,
            config,
            expect,
            memory_mb,
            timeout_ms,
        } => {
            let (wasm, input) = if plugin.is_dir() {
                let sdk = tool::find_sdk(sdk.as_deref()).ok();
                match project::run_tests(&plugin, sdk.as_deref()) {
                    Ok(true) => {}
                    Ok(false) => return ExitCode::FAILURE,
                    Err(e) => return fail(e),
                }
                let wasm = match project::build(&plugin, sdk.as_deref()) {
                    Ok(w) => w,
                    Err(e) => return fail(e),
                };
                eprintln!("built {}", wasm.display());
                let input = input.or_else(|| {
                    let default = plugin.join("batch.json");
                    default.is_file().then_some(default)
                });
                match input {
                    Some(i) => (wasm, i),
                    None => {
                        return match tool::check_component(&wasm, "{}") {
                            Ok(about) => {
                                eprintln!("loaded {about}; no batch.json to run it on");
                                ExitCode::SUCCESS
                            }
                            Err(e) => fail(e),
                        };
                    }
                }
            } else {
                match input {
                    Some(i) => (plugin, i),
                    None => {
                        return fail(format!(
                            "{} is a component: pass --input BATCH.json to run it on",
                            plugin.display()
                        ));
                    }
                }
            };
            match tool::test_command(
                &wasm,
                &input,
                config.as_deref(),
                expect.as_deref(),
                memory_mb,
                timeout_ms.map(std::time::Duration::from_millis),
            ) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn run(config: Config, reload: sluice::gateway::ReloadSource) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            trigger.cancel();
        });
        sluice::gateway::run_with_reload(config, shutdown, Some(reload)).await?;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("Cannot install signal handlers; stop the gateway with SIGKILL.");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("Received SIGTERM."),
        _ = int.recv() => tracing::info!("Received SIGINT."),
    }
}
