//! Confinement of plugin processes with Landlock (file system) and seccomp (system calls).
//!
//! # Why a launcher
//! The workspace forbids `unsafe`, so no `pre_exec` hook can confine the child between `fork` and `exec`. Instead the
//! runtime spawns a *launcher* — `toolplane __plugin-sandbox` (the hidden command of the `toolplane` binary; the cli
//! sets [`RuntimeConfig::sandbox_launcher`](crate::RuntimeConfig::sandbox_launcher) to itself) or, in this crate's
//! tests, the `toolplane-plugin-sandbox` binary — with the policy on its command line. The launcher applies the
//! Landlock ruleset and the seccomp filters to itself with the safe APIs of the `landlock` and `seccompiler` crates,
//! then `exec`s the rest of the command line (`setpriv … prlimit … python -m main`). Both survive `execve` and are
//! inherited by every child, and `no_new_privs` (set by both) keeps set-uid programs from shedding them.
//!
//! # Policy (see [`SandboxPolicy::for_plugin`])
//! File system, everything not listed is unreachable — in particular the daemon's data folder (`plugin.db`,
//! `server_key`, tenant keys, storage buckets) and the other plugins' working folders:
//! - read + execute: `/usr`, `/bin`, `/sbin`, `/lib`, `/lib32`, `/lib64` and the prefix of the interpreter the venv
//!   was made from (pyenv, uv-managed or system Python, read from `pyvenv.cfg`);
//! - read only: `/etc`, `/sys`, the plugin's own `/proc/<pid>` (through `/proc/self`, opened by the launcher whose
//!   pid the plugin keeps), a few system-wide `/proc` files (`cpuinfo`, `meminfo`, `stat`, `sys/…`), and the targets of `/etc/resolv.conf`, `/etc/hosts`, `/etc/localtime`
//!   when they are symbolic links out of `/etc`;
//! - read + write on files (no creation): `/dev` (`/dev/null`, `/dev/urandom`, ioctls on terminals); everything in
//!   `/dev/shm`, where `multiprocessing` creates its semaphores (shared by all plugins: no secrets live there);
//! - everything: the plugin's own working folder (its code, its `.venv`, and `.tmp`, where `TMPDIR` points). `/tmp`
//!   is not reachable: the shared `/tmp` is where other programs leave their files.
//! - operators can add folders with `PLUGIN_SANDBOX_READ_PATHS` and `PLUGIN_SANDBOX_WRITE_PATHS`.
//!
//! With Landlock ABI ≥ 6 the plugin also cannot signal processes outside its sandbox (so not the daemon) nor connect
//! to abstract UNIX sockets created outside it. Other processes' `/proc/<pid>` folders are not reachable (the daemon's
//! `environ` holds its secrets). The network stays open: plugins call APIs.
//!
//! System calls a plugin never needs fail with `EPERM` (not a kill, so a library probing for them degrades
//! gracefully): see [`DENIED_SYSCALLS`]; `clone` with a namespace flag also gets `EPERM`, and `clone3`, whose flags
//! seccomp cannot see, gets `ENOSYS`, on which glibc falls back to `clone`.
//!
//! # Modes (`PLUGIN_SANDBOX`)
//! `on` (the default of the binary): best effort — when the kernel lacks Landlock or seccomp filters a warning is
//! logged once and plugins run with what is available. `strict`: a plugin that cannot be confined fails to start.
//! `off`: no launcher, no confinement. [`RuntimeConfig::new`](crate::RuntimeConfig::new) (the library default, used
//! by tests that embed the runtime) starts with `off`; [`RuntimeConfig::from_lookup`](crate::RuntimeConfig::from_lookup)
//! starts with `on`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope, path_beneath_rules,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};
use thiserror::Error;

/// The first argument that makes the `toolplane` binary act as the launcher.
pub const LAUNCHER_COMMAND: &str = "__plugin-sandbox";

/// The newest Landlock ABI the policy is written for; older kernels get what they support (best effort).
const LANDLOCK_ABI: ABI = ABI::V6;

/// `PLUGIN_SANDBOX`: how plugin processes are confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    /// No confinement.
    #[default]
    Off,
    /// Confine with what the kernel offers; warn once when something is missing.
    BestEffort,
    /// A plugin that cannot be fully confined fails to start.
    Strict,
}

impl SandboxMode {
    /// Parses `off`/`false`/`0`, `on`/`true`/`1`/`best-effort`, `strict`.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "off" | "false" | "0" | "no" => Some(Self::Off),
            "on" | "true" | "1" | "yes" | "best-effort" | "auto" => Some(Self::BestEffort),
            "strict" => Some(Self::Strict),
            _ => None,
        }
    }
}

/// The program that confines itself and then execs the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxLauncher {
    /// The executable (the `toolplane` binary, or `toolplane-plugin-sandbox`).
    pub program: PathBuf,
    /// Arguments before the policy (`["__plugin-sandbox"]` for the `toolplane` binary, none for the dedicated one).
    pub leading_args: Vec<OsString>,
}

impl SandboxLauncher {
    /// The `toolplane` binary at `exe` acting as launcher through its hidden command.
    pub fn toolplane(exe: PathBuf) -> Self {
        Self {
            program: exe,
            leading_args: vec![LAUNCHER_COMMAND.into()],
        }
    }
}

/// What a rule lets the plugin do beneath a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathAccess {
    /// Read files, list folders, execute programs.
    ReadExec,
    /// Read files and list folders.
    Read,
    /// Read, write (also with `O_TRUNC`) and ioctl existing files (device nodes); no creation.
    Device,
    /// Everything (create, write, remove, execute).
    Full,
}

impl PathAccess {
    fn flag(self) -> &'static str {
        match self {
            Self::ReadExec => "--read-exec",
            Self::Read => "--read",
            Self::Device => "--device",
            Self::Full => "--full",
        }
    }

    fn from_flag(flag: &OsStr) -> Option<Self> {
        [Self::ReadExec, Self::Read, Self::Device, Self::Full]
            .into_iter()
            .find(|a| OsStr::new(a.flag()) == flag)
    }

    fn rights(self) -> BitFlags<AccessFs> {
        match self {
            Self::ReadExec => AccessFs::from_read(LANDLOCK_ABI),
            Self::Read => AccessFs::ReadFile | AccessFs::ReadDir,
            Self::Device => {
                AccessFs::ReadFile | AccessFs::ReadDir | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev
            }
            Self::Full => AccessFs::from_all(LANDLOCK_ABI),
        }
    }
}

/// The file-system rules of one plugin process, and whether confinement is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// Paths and what may be done beneath them; everything else is denied.
    pub rules: Vec<(PathAccess, PathBuf)>,
    /// Fail instead of running with partial or no confinement.
    pub strict: bool,
}

/// Extra folders configured by the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraPaths {
    /// `PLUGIN_SANDBOX_READ_PATHS` (colon-separated): read + execute.
    pub read: Vec<PathBuf>,
    /// `PLUGIN_SANDBOX_WRITE_PATHS` (colon-separated): full access.
    pub write: Vec<PathBuf>,
}

impl SandboxPolicy {
    /// The policy of the plugin in `plugin_dir` whose interpreter is `python` (`<plugin_dir>/.venv/bin/python`).
    pub fn for_plugin(plugin_dir: &Path, python: &Path, extra: &ExtraPaths, strict: bool) -> Self {
        let mut rules: Vec<(PathAccess, PathBuf)> = Vec::new();
        for dir in ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"] {
            rules.push((PathAccess::ReadExec, dir.into()));
        }
        for prefix in interpreter_prefixes(python) {
            rules.push((PathAccess::ReadExec, prefix));
        }
        for dir in ["/etc", "/sys"] {
            rules.push((PathAccess::Read, dir.into()));
        }
        // Not all of /proc: Landlock's ptrace scoping does not stop reading `/proc/<daemon pid>/environ` (observed on
        // 6.18), and the daemon's environment holds its secrets. `/proc/self` is opened by the launcher, whose pid
        // the plugin keeps across `exec`, so the rule covers the plugin's own `/proc/<pid>`.
        for path in PROC_FILES {
            rules.push((PathAccess::Read, (*path).into()));
        }
        // Debian and systemd hosts link these out of /etc (e.g. to /run/systemd/resolve): allow the file only.
        for file in ["/etc/resolv.conf", "/etc/hosts", "/etc/localtime"] {
            if let Ok(target) = std::fs::canonicalize(file)
                && !target.starts_with("/etc")
            {
                rules.push((PathAccess::Read, target));
            }
        }
        rules.push((PathAccess::Device, "/dev".into()));
        // POSIX semaphores and shared memory (`multiprocessing.Lock`, `sem_open`) are files created in /dev/shm.
        rules.push((PathAccess::Full, "/dev/shm".into()));
        rules.extend(extra.read.iter().map(|p| (PathAccess::ReadExec, p.clone())));
        rules.extend(extra.write.iter().map(|p| (PathAccess::Full, p.clone())));
        rules.push((PathAccess::Full, plugin_dir.to_path_buf()));
        Self { rules, strict }
    }

    /// The launcher's arguments for this policy, up to and including the `--` before the program.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args = Vec::with_capacity(self.rules.len() * 2 + 2);
        for (access, path) in &self.rules {
            args.push(access.flag().into());
            args.push(path.as_os_str().to_owned());
        }
        if self.strict {
            args.push("--strict".into());
        }
        args.push("--".into());
        args
    }

    /// Parses what [`SandboxPolicy::to_args`] wrote, followed by the program and its arguments.
    pub fn from_args(args: &[OsString]) -> Result<(Self, &[OsString]), SandboxError> {
        let mut policy = Self {
            rules: Vec::new(),
            strict: false,
        };
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            if arg == "--" {
                let rest = &args[i + 1..];
                if rest.is_empty() {
                    return Err(SandboxError::Usage("no program after `--`".into()));
                }
                return Ok((policy, rest));
            }
            if arg == "--strict" {
                policy.strict = true;
                i += 1;
                continue;
            }
            let Some(access) = PathAccess::from_flag(arg) else {
                return Err(SandboxError::Usage(format!("unknown option {}", arg.to_string_lossy())));
            };
            let Some(path) = args.get(i + 1) else {
                return Err(SandboxError::Usage(format!("{} needs a path", arg.to_string_lossy())));
            };
            policy.rules.push((access, PathBuf::from(path)));
            i += 2;
        }
        Err(SandboxError::Usage("missing `--` and the program to run".into()))
    }
}

/// What of `/proc` a plugin may read: its own process and system-wide figures libraries ask for.
const PROC_FILES: &[&str] = &[
    "/proc/self",
    "/proc/thread-self",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/loadavg",
    "/proc/uptime",
    "/proc/version",
    "/proc/filesystems",
    "/proc/sys",
];

/// Where the interpreter behind a venv's `python` lives: the parent of `pyvenv.cfg`'s `home`, and the prefix of the
/// resolved executable (they differ when `home` is a folder of symbolic links such as `/usr/bin`).
fn interpreter_prefixes(python: &Path) -> Vec<PathBuf> {
    let mut prefixes = Vec::new();
    let cfg = python
        .parent()
        .and_then(Path::parent)
        .map(|venv| venv.join("pyvenv.cfg"));
    if let Some(text) = cfg.and_then(|c| std::fs::read_to_string(c).ok()) {
        for line in text.lines() {
            if let Some((key, value)) = line.split_once('=')
                && key.trim() == "home"
                && let Some(prefix) = Path::new(value.trim()).parent()
            {
                prefixes.push(prefix.to_path_buf());
            }
        }
    }
    if let Ok(real) = std::fs::canonicalize(python)
        && let Some(prefix) = real.parent().and_then(Path::parent)
        && !prefixes.contains(&prefix.to_path_buf())
    {
        prefixes.push(prefix.to_path_buf());
    }
    // `/` or `/usr` as a prefix are either too broad or already covered.
    prefixes.retain(|p| p != Path::new("/") && !p.starts_with("/usr"));
    prefixes
}

/// System calls a plugin never needs; they fail with `EPERM` (on x86-64 also `iopl` and `ioperm`).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub const DENIED_SYSCALLS: &[(&str, i64)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("kcmp", libc::SYS_kcmp),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("syslog", libc::SYS_syslog),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("sethostname", libc::SYS_sethostname),
    ("setdomainname", libc::SYS_setdomainname),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("vhangup", libc::SYS_vhangup),
];

/// Denied on x86-64 only (port I/O).
#[cfg(target_arch = "x86_64")]
const ARCH_DENIED_SYSCALLS: &[(&str, i64)] = &[("iopl", libc::SYS_iopl), ("ioperm", libc::SYS_ioperm)];
#[cfg(not(target_arch = "x86_64"))]
const ARCH_DENIED_SYSCALLS: &[(&str, i64)] = &[];

/// No seccomp filter is written for other architectures.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const DENIED_SYSCALLS: &[(&str, i64)] = &[];

/// `clone` flags that create namespaces (`CLONE_NEWTIME` is left out: in `clone` its bit is part of `CSIGNAL`).
const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

/// The seccomp programs, in the order they are installed: the `EPERM` list (with `clone` + namespace flags), then
/// `ENOSYS` for `clone3`.
pub fn seccomp_programs() -> Result<Vec<BpfProgram>, SandboxError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| SandboxError::Unsupported(format!("no seccomp filter for {}", std::env::consts::ARCH)))?;
    if DENIED_SYSCALLS.is_empty() {
        return Err(SandboxError::Unsupported(format!(
            "no seccomp filter for {}",
            std::env::consts::ARCH
        )));
    }
    let bpf = |e: seccompiler::BackendError| SandboxError::Seccomp(e.to_string());
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = DENIED_SYSCALLS
        .iter()
        .chain(ARCH_DENIED_SYSCALLS)
        .map(|(_, nr)| (*nr, Vec::new()))
        .collect();
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|flag| {
            SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(*flag), *flag)
                .and_then(|c| SeccompRule::new(vec![c]))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(bpf)?;
    deny.insert(libc::SYS_clone, clone_rules);
    let eperm = SeccompFilter::new(
        deny,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(bpf)?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(bpf)?;
    [eperm, clone3]
        .into_iter()
        .map(|f| BpfProgram::try_from(f).map_err(bpf))
        .collect()
}

/// Confinement failed or is unavailable.
#[derive(Debug, Error)]
pub enum SandboxError {
    /// The launcher's command line is wrong.
    #[error(
        "plugin sandbox launcher: {0} (usage: {LAUNCHER_COMMAND} [--read-exec|--read|--device|--full PATH]… [--strict] -- PROGRAM ARGS…)"
    )]
    Usage(String),
    /// The kernel or architecture lacks a feature.
    #[error("{0}")]
    Unsupported(String),
    /// Landlock refused the ruleset.
    #[error("Landlock: {0}")]
    Landlock(String),
    /// seccomp refused the filter.
    #[error("seccomp: {0}")]
    Seccomp(String),
}

/// What [`confine`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// Landlock: `None` when fully enforced, else why not.
    pub landlock_gap: Option<String>,
    /// seccomp: `None` when installed, else why not.
    pub seccomp_gap: Option<String>,
}

impl Confinement {
    /// Whether both parts are in force.
    pub fn complete(&self) -> bool {
        self.landlock_gap.is_none() && self.seccomp_gap.is_none()
    }

    /// The missing parts, for a warning.
    pub fn gaps(&self) -> String {
        [&self.landlock_gap, &self.seccomp_gap]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Confines the calling thread (and what it execs) by `policy`. Partial confinement is returned, not an error.
pub fn confine(policy: &SandboxPolicy) -> Result<Confinement, SandboxError> {
    let landlock_gap = apply_landlock(policy)?;
    let seccomp_gap = match seccomp_programs() {
        Err(SandboxError::Unsupported(why)) => Some(why),
        Err(e) => return Err(e),
        Ok(programs) => {
            let mut gap = None;
            for program in &programs {
                if let Err(e) = seccompiler::apply_filter(program) {
                    gap = Some(format!("seccomp filters are unavailable: {e}"));
                    break;
                }
            }
            gap
        }
    };
    Ok(Confinement {
        landlock_gap,
        seccomp_gap,
    })
}

fn apply_landlock(policy: &SandboxPolicy) -> Result<Option<String>, SandboxError> {
    let ll = |e: landlock::RulesetError| SandboxError::Landlock(e.to_string());
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))
        .map_err(ll)?
        .scope(Scope::from_all(LANDLOCK_ABI))
        .map_err(ll)?
        .create()
        .map_err(ll)?;
    for (access, path) in &policy.rules {
        ruleset = ruleset
            .add_rules(path_beneath_rules([path], access.rights()))
            .map_err(ll)?;
    }
    let status = ruleset.restrict_self().map_err(ll)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => None,
        RulesetStatus::PartiallyEnforced => Some(format!(
            "Landlock is only partly enforced (kernel {:?}; the policy is written for ABI {})",
            status.landlock, LANDLOCK_ABI as i32
        )),
        RulesetStatus::NotEnforced => Some(format!("Landlock is unavailable ({:?})", status.landlock)),
    })
}

/// What the host offers, probed once in the daemon (without confining it).
pub(crate) fn host_gaps() -> Option<&'static str> {
    static GAPS: OnceLock<Option<String>> = OnceLock::new();
    GAPS.get_or_init(|| {
        let mut gaps = Vec::new();
        let probe = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(LANDLOCK_ABI))
            .and_then(|r| r.create());
        if let Err(e) = probe {
            gaps.push(format!("Landlock ABI {} is unavailable ({e})", LANDLOCK_ABI as i32));
        }
        let actions = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
        if !actions.split_whitespace().any(|a| a == "errno") {
            gaps.push(
                "seccomp filters are unavailable (no errno action in /proc/sys/kernel/seccomp/actions_avail)".into(),
            );
        }
        if let Err(e) = seccomp_programs() {
            gaps.push(e.to_string());
        }
        (!gaps.is_empty()).then(|| gaps.join("; "))
    })
    .as_deref()
}

/// The launcher: `args` are what follows the program name (and [`LAUNCHER_COMMAND`] for the `toolplane` binary).
/// Confines itself and execs the program; returns only when that fails (exit code 126) or the program cannot be
/// run (127). Messages go to stderr, which the runtime keeps in the plugin's stderr tail.
pub fn launcher_main(args: &[OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let (policy, command) = match SandboxPolicy::from_args(args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match confine(&policy) {
        Ok(done) if done.complete() => {}
        Ok(done) if policy.strict => {
            eprintln!(
                "plugin sandbox: cannot confine the plugin ({}); PLUGIN_SANDBOX=strict refuses to run it",
                done.gaps()
            );
            return ExitCode::from(126);
        }
        Ok(done) => eprintln!("plugin sandbox: running partly confined: {}", done.gaps()),
        Err(e) => {
            eprintln!("plugin sandbox: {e}; the plugin was not started");
            return ExitCode::from(126);
        }
    }
    let Some((program, rest)) = command.split_first() else {
        eprintln!("plugin sandbox: no program to run");
        return ExitCode::from(2);
    };
    let error = std::process::Command::new(program).args(rest).exec();
    eprintln!("plugin sandbox: could not run {}: {error}", program.to_string_lossy());
    ExitCode::from(127)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_policy_reaches_its_folder_and_the_interpreter_only() {
        let root = tempfile::tempdir().unwrap();
        let plugin = root.path().join("cwd/author/p-0.0.1@abc");
        let prefix = root.path().join("pythons/3.12.1");
        std::fs::create_dir_all(plugin.join(".venv/bin")).unwrap();
        std::fs::create_dir_all(prefix.join("bin")).unwrap();
        std::fs::write(prefix.join("bin/python3.12"), "").unwrap();
        std::os::unix::fs::symlink(prefix.join("bin/python3.12"), plugin.join(".venv/bin/python")).unwrap();
        std::fs::write(
            plugin.join(".venv/pyvenv.cfg"),
            format!("home = {}\nversion_info = 3.12.1\n", prefix.join("bin").display()),
        )
        .unwrap();
        let extra = ExtraPaths {
            read: vec!["/opt/models".into()],
            write: vec![],
        };
        let policy = SandboxPolicy::for_plugin(&plugin, &plugin.join(".venv/bin/python"), &extra, false);

        let full: Vec<_> = policy.rules.iter().filter(|(a, _)| *a == PathAccess::Full).collect();
        assert_eq!(
            full,
            [
                &(PathAccess::Full, "/dev/shm".into()),
                &(PathAccess::Full, plugin.clone())
            ],
            "only the plugin's folder (and /dev/shm) is writable"
        );
        assert!(
            policy.rules.contains(&(PathAccess::ReadExec, prefix.clone())),
            "{policy:?}"
        );
        assert!(policy.rules.contains(&(PathAccess::ReadExec, "/usr".into())));
        assert!(policy.rules.contains(&(PathAccess::ReadExec, "/opt/models".into())));
        assert!(policy.rules.contains(&(PathAccess::Device, "/dev".into())));
        assert!(policy.rules.contains(&(PathAccess::Read, "/proc/self".into())));
        assert!(
            !policy.rules.iter().any(|(_, p)| p == Path::new("/proc")),
            "other processes' /proc folders"
        );
        // Nothing reaches the data folder that holds the working folders, nor /tmp or the user's home.
        for (_, path) in &policy.rules {
            assert!(
                !root.path().join("cwd").starts_with(path),
                "{path:?} exposes the data folder"
            );
            assert!(
                !Path::new("/tmp").starts_with(path) && !Path::new("/root").starts_with(path),
                "{path:?}"
            );
        }
        assert!(!policy.strict);

        // The rules survive the launcher's command line.
        let mut args = SandboxPolicy {
            strict: true,
            ..policy.clone()
        }
        .to_args();
        args.extend(["python".into(), "-m".into(), "main".into()]);
        let (parsed, command) = SandboxPolicy::from_args(&args).unwrap();
        assert_eq!(parsed.rules, policy.rules);
        assert!(parsed.strict);
        assert_eq!(command, [OsString::from("python"), "-m".into(), "main".into()]);
    }

    #[test]
    fn bad_launcher_arguments_are_explained() {
        let err = SandboxPolicy::from_args(&["--read".into()]).unwrap_err();
        assert!(err.to_string().contains("--read needs a path"), "{err}");
        let err = SandboxPolicy::from_args(&["--bogus".into(), "x".into()]).unwrap_err();
        assert!(err.to_string().contains("unknown option --bogus"), "{err}");
        let err = SandboxPolicy::from_args(&["--read".into(), "/etc".into()]).unwrap_err();
        assert!(err.to_string().contains("missing `--`"), "{err}");
        let err = SandboxPolicy::from_args(&["--".into()]).unwrap_err();
        assert!(err.to_string().contains("no program"), "{err}");
    }

    #[test]
    fn modes_parse() {
        assert_eq!(SandboxMode::parse("OFF"), Some(SandboxMode::Off));
        assert_eq!(SandboxMode::parse("on"), Some(SandboxMode::BestEffort));
        assert_eq!(SandboxMode::parse(" strict "), Some(SandboxMode::Strict));
        assert_eq!(SandboxMode::parse("maybe"), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_seccomp_programs_compile() {
        let programs = seccomp_programs().unwrap();
        assert_eq!(programs.len(), 2);
        // One syscall-number comparison per denied call (plus clone) in the first program.
        let compares = |p: &BpfProgram, nr: i64| p.iter().filter(|i| i.code == 0x15 && i64::from(i.k) == nr).count();
        for (name, nr) in DENIED_SYSCALLS.iter().chain(ARCH_DENIED_SYSCALLS) {
            assert_eq!(compares(&programs[0], *nr), 1, "{name}");
        }
        assert_eq!(compares(&programs[1], libc::SYS_clone3), 1);
    }
}
