"""gamebed's own user-mode Linux guest kernel: fetched, patched, configured, built once
and cached machine-wide (root: apt into a private state directory, the cache under
/var/cache).

Why our own: Debian's UML kernels before 6.13 fix the host's XSAVE area at 2696
bytes, and a host with AMX (any Intel server from Sapphire Rapids on) needs 11008,
so their guests die at the first register restore ("ptrace set fp regs failed").

The source, by rule (never a pinned version):
1. the newest `linux-source-X.Y` in Debian sid whose X.Y >= 6.13 (upstream sizes the
   register area at run time since then), fetched with `apt-get download` against a
   private sources list and state directory (the system's apt setup is untouched);
2. when that fetch, build or smoke boot fails: bookworm's `linux-source-6.1`
   (/usr/src, installed by scripts/setup.sh) with gamebed's fix for it.
Either way kernel.json records the package, its version and why.

Recipe (vm/uml-kernel/): `allnoconfig` plus gamebed.config (everything built in, no
modules), and one patch: xstate-limit.patch (>= 6.13: a clear error, not a panic, on
a host whose area exceeds the kernel's limit; `xstate_max=` lowers the limit for the
test) or xstate-6.1.patch (the fallback: the area sized at run time up to 12288
bytes, with the same check).

Cache: CACHE/<digest>/linux.uml + kernel.json, the digest over the recipe (config
fragment, the source's patch and extra config lines) and the source package's name
and version.  A lookup takes the newest build whose recipe is still current,
so a newer sid upload does not rebuild under a user's feet; `gamebed image build
--force` fetches and builds anew.  A flock on CACHE/.lock keeps two builds apart.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from vm.accel import first_line
from vm.guestlink import reason_lines

RECIPE_DIR = Path(__file__).resolve().parent / "uml-kernel"
CACHE = Path(os.environ.get("GAMEBED_KERNEL_CACHE", "/var/cache/gamebed/uml-kernel"))
BUILD_VERSION = "1"  # bump when this module changes what a build produces
SID_LIST = ("deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
            "http://deb.debian.org/debian sid main")
FIXED_IN = (6, 13)  # "um: switch to regset API and depend on XSTATE"
SECCOMP_IN = (6, 16)  # UML's seccomp=on userspace
FALLBACK_TAR = Path("/usr/src/linux-source-6.1.tar.xz")
BINARY = "linux.uml"  # the cached kernel's file name (process lists show it)
SETUP_HINT = "run `bash scripts/setup.sh` (it installs the kernel's build tools)"
BUILD_TOOLS = ("make", "gcc", "flex", "bison", "bc", "patch", "tar", "xz")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Source:
    """A kernel source tarball and what to apply to it."""

    package: str  # linux-source-7.2
    version: str  # Debian's version of that package, 7.2.13-1
    origin: str  # where it came from, and for the fallback why
    tarball: Path
    patch: str  # file name in RECIPE_DIR
    config_extra: tuple[str, ...] = ()

    @property
    def series(self) -> tuple[int, int]:
        return series_of(self.package)


@dataclass(frozen=True)
class Recipe:
    """What a build takes besides the source: config fragment, patches, cache."""

    dir: Path = RECIPE_DIR
    cache: Path = field(default_factory=lambda: CACHE)

    def text(self, name: str) -> str:
        return (self.dir / name).read_text()

    def digest(self, patch: str, config_extra: tuple[str, ...] = ()) -> str:
        """A source's recipe: the config fragment with its extra lines, its patch, the
        build's own version (a change to another source's patch rebuilds nothing)."""
        return _digest([BUILD_VERSION.encode(), (self.dir / "gamebed.config").read_bytes(),
                        "\n".join(config_extra).encode(), (self.dir / patch).read_bytes()])


@dataclass(frozen=True)
class UmlKernel:
    binary: Path
    info: dict

    @property
    def digest(self) -> str:
        return self.info["digest"]

    @property
    def has_seccomp(self) -> bool:
        return bool(self.info.get("seccomp"))

    def describe(self) -> dict:
        """What every point's environment and the report say of the guest kernel."""
        i = self.info
        return {"guest_kernel": f"Linux {i.get('release')} (user-mode)",
                "guest_kernel_digest": i.get("digest"),
                "guest_kernel_source": f"{i.get('package')} {i.get('source_version')} "
                                       f"({i.get('origin')})",
                "guest_kernel_patch": f"{i.get('patch')} sha256:{i.get('patch_sha', '')[:16]}"}


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


def series_of(package: str) -> tuple[int, int]:
    m = re.fullmatch(r"linux-source-(\d+)\.(\d+)", package)
    if not m:
        raise ValueError(f"not a kernel source package: {package}")
    return int(m[1]), int(m[2])


def newest_fixed(names: list[str], fixed: tuple[int, int] = FIXED_IN) -> str | None:
    """The rule: of the linux-source-X.Y packages offered, the highest X.Y >= `fixed`."""
    ok = [n for n in names if re.fullmatch(r"linux-source-\d+\.\d+", n)
          and series_of(n) >= fixed]
    return max(ok, key=series_of) if ok else None


# --- fetching the source ----------------------------------------------------------------

def _apt(work: Path) -> list[str]:
    """apt options for a private sources list and state: the system's setup is untouched."""
    (work / "state" / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (work / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (work / "sources.list").write_text(SID_LIST + "\n")
    return [f"-oDir::Etc::SourceList={work / 'sources.list'}", "-oDir::Etc::SourceParts=/dev/null",
            f"-oDir::State={work / 'state'}", f"-oDir::Cache={work / 'cache'}",
            "-oDir::Etc::Preferences=/dev/null", "-oDir::Etc::PreferencesParts=/dev/null",
            "-oAPT::Architectures=amd64", "-oAPT::Sandbox::User=root", "-qq"]


def _run(args: list, cwd: Path | None = None, timeout: float = 600) -> str:
    r = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"`{' '.join(map(str, args[:3]))} ...` failed ({r.returncode}): "
                           + " | ".join(tail))
    return r.stdout


def fetch_sid(work: Path) -> Source:
    """The newest fixed linux-source-X.Y of Debian sid, downloaded (not installed)."""
    opts = _apt(work / "apt")
    _run(["apt-get", *opts, "update"], timeout=300)
    names = _run(["apt-cache", *opts, "pkgnames", "linux-source-"]).split()
    name = newest_fixed(names)
    if name is None:
        raise RuntimeError(f"sid offers no linux-source-X.Y >= {FIXED_IN[0]}.{FIXED_IN[1]} "
                           f"(offered: {', '.join(sorted(names)) or 'none'})")
    version = _run(["apt-cache", *opts, "show", "--no-all-versions", name])
    version = re.search(r"^Version: (\S+)", version, re.M)[1]
    _run(["apt-get", *opts, "download", name], cwd=work, timeout=900)
    deb = next(work.glob(f"{name}_*.deb"))
    inner = f"./usr/src/{name}.tar.xz"
    with open(work / "src.tar.xz", "wb") as out:
        dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-xO", inner], stdin=dpkg.stdout, stdout=out, check=True)
        dpkg.wait()
    deb.unlink()
    return Source(name, version, "Debian sid", work / "src.tar.xz", "xstate-limit.patch")


def bookworm_fallback(why: str) -> Source:
    """bookworm's 6.1 source (scripts/setup.sh installs it) with gamebed's fix."""
    if not FALLBACK_TAR.exists():
        raise FileNotFoundError(f"{FALLBACK_TAR} is missing (the fallback source): {SETUP_HINT}")
    version = _run(["dpkg-query", "-W", "-f=${Version}", "linux-source-6.1"]).strip()
    # thread_info holds a copy of the register area: 12 KiB needs 32 KiB kernel stacks;
    # 6.1's vector driver sits under the old UML_NET menu (gone from 7.x)
    return Source("linux-source-6.1", version, f"Debian bookworm, fallback: {why}",
                  FALLBACK_TAR, "xstate-6.1.patch",
                  ("CONFIG_KERNEL_STACK_ORDER=3", "CONFIG_UML_NET=y"))


# --- building ---------------------------------------------------------------------------

STAGES = ("unpacking", "patching", "configuring", "compiling", "smoke boot")


class Stages:
    """One line per stage, each with an ETA from the last build's stage times."""

    def __init__(self, progress: Progress, last: dict[str, float]) -> None:
        self.progress, self.last, self.took = progress, last, {}
        self.t0 = self.t = time.monotonic()
        self.name: str | None = None

    def start(self, name: str) -> None:
        self._close()
        self.name, self.t = name, time.monotonic()
        k = STAGES.index(name) + 1
        left = sum(self.last.get(s, 0.0) for s in STAGES[k - 1:])
        eta = f"about {_mins(left)} left (last build)" if self.last else "no earlier build to time"
        self.progress(f"uml kernel: [{k}/{len(STAGES)}] {name} ... {eta}")

    def tick(self) -> None:
        """A line a minute in a long stage, with its own ETA."""
        spent = time.monotonic() - self.t
        left = self.last.get(self.name or "", 0.0) - spent
        eta = f", about {_mins(left)} left" if left > 0 else ""
        self.progress(f"uml kernel:       {self.name}: {_mins(spent)} in{eta}")

    def _close(self) -> None:
        if self.name:
            self.took[self.name] = round(time.monotonic() - self.t, 1)

    def done(self) -> dict[str, float]:
        self._close()
        self.name = None
        return self.took


def _mins(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def _config(src: Path, recipe: Recipe, source: Source) -> None:
    """allnoconfig + gamebed.config (+ the source's own lines), then checked: every line
    asked for must hold, or the build stops naming it."""
    frag = src / "gamebed.config"
    frag.write_text(recipe.text("gamebed.config") + "".join(f"{x}\n" for x in source.config_extra))
    _run(["make", "ARCH=um", "allnoconfig"], cwd=src)
    _run(["scripts/kconfig/merge_config.sh", "-m", "-O", ".", ".config", frag], cwd=src)
    _run(["make", "ARCH=um", "olddefconfig"], cwd=src)
    have = set((src / ".config").read_text().splitlines())
    # "CONFIG_X=n" is asked for as such, and .config says "# CONFIG_X is not set"
    want = [re.sub(r"^(CONFIG_\w+)=n$", r"# \1 is not set", ln)
            for ln in frag.read_text().splitlines() if ln.startswith("CONFIG_")]
    missing = [ln for ln in want if ln not in have]
    if missing:
        raise RuntimeError(f"{source.package}: the config lacks {', '.join(missing)} after "
                           "olddefconfig (a dependency is off, or the symbol was renamed)")


def _compile(src: Path, stages: Stages) -> None:
    jobs = str(len(os.sched_getaffinity(0)))
    log = src / "build.log"
    with open(log, "w") as out:
        p = subprocess.Popen(["make", "ARCH=um", f"-j{jobs}", "linux"], cwd=src, stdout=out,
                             stderr=subprocess.STDOUT)
        next_tick = time.monotonic() + 60
        while p.poll() is None:
            time.sleep(0.5)
            if time.monotonic() > next_tick:
                stages.tick()
                next_tick += 60
    if p.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError("make ARCH=um linux failed: " + " | ".join(tail))


def smoke_boot(binary: Path, extra: tuple[str, ...] = (), timeout: float = 60) -> str:
    """Boot the kernel to user space and back: the host's root through hostfs, read-only,
    init=/bin/true.  True's exit panics the kernel with exitcode 0, which proves a user
    process ran and its registers were restored.  Returns the console, or raises with
    its reason lines."""
    with tempfile.TemporaryDirectory(prefix="gb-uml-smoke-") as tmp:
        args = [str(binary), "mem=64M", "root=/dev/root", "rootfstype=hostfs", "rootflags=/",
                "ro", "init=/bin/true", "con=null", "con0=null,fd:1", f"uml_dir={tmp}", *extra]
        r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           errors="replace", timeout=timeout, env={"TMPDIR": tmp})
    console = r.stdout + r.stderr
    if "Attempted to kill init! exitcode=0x00000000" in console:
        return console
    raise RuntimeError(f"{binary} did not boot to user space (exit {r.returncode}): "
                       + (" | ".join(reason_lines(console)) or console.strip()[-300:]))


def compile_source(source: Source, recipe: Recipe, work: Path, stages: Stages) -> Path:
    """Unpack, patch, configure and compile `source`; returns the built `linux`."""
    stages.start("unpacking")
    _run(["tar", "-xf", source.tarball, "-C", work], timeout=900)
    src = next(p for p in work.iterdir() if p.is_dir() and (p / "Makefile").exists())
    stages.start("patching")
    _run(["patch", "-p1", "--forward", "-i", recipe.dir / source.patch], cwd=src)
    stages.start("configuring")
    _config(src, recipe, source)
    stages.start("compiling")
    _compile(src, stages)
    return src / "linux"


Fetch = Callable[[Path], Source]
Compile = Callable[[Source, Recipe, Path, Stages], Path]
Smoke = Callable[[Path], str]


@dataclass(frozen=True)
class Builder:
    """The steps of a build; tests replace them (the cache logic stays real)."""

    fetch: Fetch = fetch_sid
    fallback: Callable[[str], Source] = bookworm_fallback
    compile: Compile = compile_source
    smoke: Smoke = smoke_boot


@contextmanager
def _locked(cache: Path, progress: Progress) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"uml kernel: another gamebed is building it ({cache / '.lock'}); "
                     "waiting")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def cached(recipe: Recipe) -> UmlKernel | None:
    """The newest cached build of this recipe, if any."""
    found = []
    for j in recipe.cache.glob("*/kernel.json"):
        try:
            info = json.loads(j.read_text())
        except (OSError, ValueError):
            continue
        try:
            want = recipe.digest(info["patch"], tuple(info.get("config_extra", ())))
        except (KeyError, OSError):
            continue  # a patch this recipe no longer has
        if info.get("recipe") == want and (j.parent / BINARY).is_file():
            found.append((info.get("built_at", 0), UmlKernel(j.parent / BINARY, info)))
    return max(found, key=lambda x: x[0])[1] if found else None


def ensure(recipe: Recipe | None = None, progress: Progress = print, force: bool = False,
           builder: Builder | None = None) -> UmlKernel:
    """gamebed's UML kernel: from the cache, else built (newest fixed sid source, else
    the bookworm fallback), under the cache's lock."""
    recipe, builder = recipe or Recipe(), builder or Builder()
    if not force and (k := cached(recipe)):
        return k
    with _locked(recipe.cache, progress):
        if not force and (k := cached(recipe)):  # built while we waited
            return k
        work = Path(tempfile.mkdtemp(prefix="work-", dir=recipe.cache))
        try:
            return _build(recipe, builder, work, progress)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _build(recipe: Recipe, builder: Builder, work: Path, progress: Progress) -> UmlKernel:
    last = _last_times(recipe.cache)
    try:
        progress("uml kernel: fetching the newest fixed linux-source from Debian sid")
        source = builder.fetch(work)
        return _build_one(source, recipe, builder, work / "new", progress, last)
    except Exception as e:  # noqa: BLE001 - any failure of the new source: the fallback
        why = first_line(e)
        progress(f"uml kernel: {why}; falling back to bookworm's linux-source-6.1 + fix")
    return _build_one(builder.fallback(why), recipe, builder, work / "old", progress, last)


def _build_one(source: Source, recipe: Recipe, builder: Builder, work: Path,
               progress: Progress, last: dict) -> UmlKernel:
    progress(f"uml kernel: building {source.package} {source.version} ({source.origin})")
    work.mkdir(parents=True)
    stages = Stages(progress, last.get(source.package, last.get("any", {})))
    binary = builder.compile(source, recipe, work, stages)
    stages.start("smoke boot")
    builder.smoke(binary)
    took = stages.done()
    version = _run([binary, "--version"], timeout=20).strip()
    patch = (recipe.dir / source.patch).read_bytes()
    rdigest = recipe.digest(source.patch, source.config_extra)
    key = _digest([rdigest.encode(), source.package.encode(), source.version.encode()])
    info = {"digest": key, "recipe": rdigest, "release": version,
            "package": source.package, "source_version": source.version,
            "origin": source.origin, "patch": source.patch,
            "config_extra": list(source.config_extra),
            "patch_sha": hashlib.sha256(patch).hexdigest(),
            "seccomp": source.series >= SECCOMP_IN, "built_at": time.time(),
            "build_s": round(sum(took.values()), 1), "stages_s": took}
    out = recipe.cache / key
    part = recipe.cache / f"{key}.part"
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir()
    shutil.copy2(binary, part / BINARY)
    (part / "kernel.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(part, out)
    _save_times(recipe.cache, source.package, took)
    progress(f"uml kernel: built {source.package} {source.version} in "
             f"{_mins(info['build_s'])}: {out / BINARY}")
    return UmlKernel(out / BINARY, info)


def _last_times(cache: Path) -> dict:
    try:
        return json.loads((cache / "last-build.json").read_text())
    except (OSError, ValueError):
        return {}


def _save_times(cache: Path, package: str, took: dict) -> None:
    times = _last_times(cache)
    times[package] = times["any"] = took
    (cache / "last-build.json").write_text(json.dumps(times, indent=1) + "\n")


def given(path: Path) -> UmlKernel:
    """`--uml-kernel PATH`: another UML binary, described by what it says of itself."""
    path = Path(path).resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise FileNotFoundError(f"--uml-kernel {path}: not an executable file")
    release = _run([path, "--version"], timeout=20).strip()
    m = re.match(r"(\d+)\.(\d+)", release)
    info = {"digest": _digest([path.read_bytes()]), "release": release,
            "package": "a binary given by --uml-kernel", "source_version": str(path),
            "origin": "not built by gamebed", "patch": "unknown", "patch_sha": "",
            "seccomp": bool(m) and (int(m[1]), int(m[2])) >= SECCOMP_IN}
    return UmlKernel(path, info)



