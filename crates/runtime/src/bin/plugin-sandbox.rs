//! The plugin sandbox launcher as its own small binary, for this crate's tests and for hosts that embed the runtime
//! without the `toolplane` binary: `toolplane-plugin-sandbox [--read-exec|--read|--device|--full PATH]… [--strict]
//! -- PROGRAM ARGS…` confines itself, then execs PROGRAM (see `toolplane_runtime::sandbox`).

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    toolplane_runtime::sandbox::launcher_main(&args)
}
