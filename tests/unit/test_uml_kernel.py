"""gamebed's UML kernel without building one: the source rule, the cache and its digest,
the fallback, a given binary, and the reason lines of a real panic console."""

import json
import shutil
from pathlib import Path

import pytest

from gamebed.spec import ExperimentSpec
from vm import uml_kernel
from vm.guestlink import reason_lines
from vm.uml_kernel import Builder, Recipe, Source

FIXTURES = Path(__file__).parent / "fixtures"


def test_reason_lines_of_a_real_amx_panic_name_the_ptrace_failure():
    """Debian bookworm's UML 6.1.176 on this AMX host, as it printed it."""
    console = (FIXTURES / "uml-6.1.176-amx-panic.console").read_text()
    why = reason_lines(console)
    assert any("ptrace set fp regs failed, errno = 14" in ln for ln in why)
    assert any("Attempted to kill init" in ln for ln in why)
    assert not any(ln.startswith("[<") or "Call Trace" in ln for ln in why)
    assert len(why) <= 3


def test_reason_lines_take_the_kernels_own_refusal():
    console = ("Checking syscall emulation for ptrace...OK\n"
               "gamebed: the host's XSAVE area is 11008 bytes, more than this UML kernel "
               "holds (4096 bytes): build a kernel with a larger register area\n")
    assert reason_lines(console) == [console.splitlines()[1]]


@pytest.mark.parametrize("names,want", [
    (["linux-source-6.12", "linux-source-7.2", "linux-source-7.10", "linux-source"],
     "linux-source-7.10"),
    (["linux-source-6.13"], "linux-source-6.13"),
    (["linux-source-6.12", "linux-source-6.1", "linux-source-7.2-rt"], None),
    ([], None)])
def test_the_source_is_the_newest_fixed_series(names, want):
    assert uml_kernel.newest_fixed(names) == want


def fake_recipe(tmp_path: Path) -> Recipe:
    rdir = tmp_path / "recipe"
    shutil.copytree(uml_kernel.RECIPE_DIR, rdir)
    return Recipe(dir=rdir, cache=tmp_path / "cache")


class FakeBuild:
    """Stands in for fetch and compile: a 'kernel' that is a script printing its version."""

    def __init__(self, tmp_path: Path, fetch_fails: bool = False) -> None:
        self.tmp, self.fetch_fails = tmp_path, fetch_fails
        self.compiled: list[str] = []

    def fetch(self, work: Path) -> Source:
        if self.fetch_fails:
            raise RuntimeError("`apt-get update` failed (100): no network")
        return Source("linux-source-7.2", "7.2.13-1", "Debian sid", work / "src.tar.xz",
                      "xstate-limit.patch")

    def fallback(self, why: str) -> Source:
        return Source("linux-source-6.1", "6.1.192-1", f"Debian bookworm, fallback: {why}",
                      Path("/nonexistent"), "xstate-6.1.patch", ("CONFIG_KERNEL_STACK_ORDER=3",))

    def compile(self, source: Source, recipe: Recipe, work: Path, stages) -> Path:
        for s in uml_kernel.STAGES[:4]:
            stages.start(s)
        self.compiled.append(source.package)
        out = work / "linux"
        out.write_text(f"#!/bin/sh\necho {source.package.split('-')[-1]}.99\n")
        out.chmod(0o755)
        return out

    def builder(self) -> Builder:
        return Builder(fetch=self.fetch, fallback=self.fallback, compile=self.compile,
                       smoke=lambda binary: "Attempted to kill init! exitcode=0x00000000")


def test_the_cache_is_reused_until_the_config_changes(tmp_path):
    recipe, fake, lines = fake_recipe(tmp_path), FakeBuild(tmp_path), []
    k1 = uml_kernel.ensure(recipe, lines.append, builder=fake.builder())
    assert fake.compiled == ["linux-source-7.2"]
    assert k1.binary == recipe.cache / k1.digest / "linux.uml" and k1.binary.is_file()
    assert k1.info["release"] == "7.2.99" and k1.has_seccomp
    assert k1.info["source_version"] == "7.2.13-1" and k1.info["patch"] == "xstate-limit.patch"
    assert [ln for ln in lines if "[4/5] compiling" in ln]  # one line per stage
    k2 = uml_kernel.ensure(recipe, lines.append, builder=fake.builder())
    assert fake.compiled == ["linux-source-7.2"] and k2.digest == k1.digest
    # the second build's stage lines have an ETA from the first's times
    with open(recipe.dir / "gamebed.config", "a") as f:
        f.write("CONFIG_PRINTK_TIME=y\n")
    lines.clear()
    k3 = uml_kernel.ensure(recipe, lines.append, builder=fake.builder())
    assert fake.compiled == ["linux-source-7.2"] * 2 and k3.digest != k1.digest
    assert any("left (last build)" in ln for ln in lines)
    assert uml_kernel.cached(recipe).digest == k3.digest
    assert not list(recipe.cache.glob("work-*")) and not list(recipe.cache.glob("*.part"))


def test_a_patch_change_rebuilds_and_force_rebuilds(tmp_path):
    recipe, fake = fake_recipe(tmp_path), FakeBuild(tmp_path)
    k1 = uml_kernel.ensure(recipe, print, builder=fake.builder())
    with open(recipe.dir / "xstate-6.1.patch", "a") as f:  # the other source's patch
        f.write("\n")
    assert uml_kernel.ensure(recipe, print, builder=fake.builder()).digest == k1.digest
    with open(recipe.dir / "xstate-limit.patch", "a") as f:
        f.write("\n")
    k2 = uml_kernel.ensure(recipe, print, builder=fake.builder())
    assert k2.digest != k1.digest and len(fake.compiled) == 2
    uml_kernel.ensure(recipe, print, force=True, builder=fake.builder())
    assert len(fake.compiled) == 3


def test_a_failed_fetch_falls_back_to_bookworm_and_says_why(tmp_path):
    recipe, fake, lines = fake_recipe(tmp_path), FakeBuild(tmp_path, fetch_fails=True), []
    k = uml_kernel.ensure(recipe, lines.append, builder=fake.builder())
    assert fake.compiled == ["linux-source-6.1"]
    assert k.info["package"] == "linux-source-6.1" and "no network" in k.info["origin"]
    assert not k.has_seccomp and k.info["patch"] == "xstate-6.1.patch"
    assert any("falling back" in ln for ln in lines)
    stored = json.loads((k.binary.parent / "kernel.json").read_text())
    assert stored["digest"] == k.digest
    assert stored["recipe"] == recipe.digest("xstate-6.1.patch", ("CONFIG_KERNEL_STACK_ORDER=3",))


def test_a_build_that_fails_to_boot_falls_back_too(tmp_path):
    recipe, fake = fake_recipe(tmp_path), FakeBuild(tmp_path)
    booted = []

    def smoke(binary: Path) -> str:
        booted.append(binary.read_text())
        if "7.2" in booted[-1]:
            raise RuntimeError("did not boot to user space: ptrace set fp regs failed")
        return "ok"

    b = Builder(fetch=fake.fetch, fallback=fake.fallback, compile=fake.compile, smoke=smoke)
    k = uml_kernel.ensure(recipe, print, builder=b)
    assert fake.compiled == ["linux-source-7.2", "linux-source-6.1"]
    assert "ptrace set fp regs failed" in k.info["origin"]


def test_a_given_binary_is_described_by_itself(tmp_path):
    b = tmp_path / "my-linux"
    b.write_text("#!/bin/sh\necho 6.18.3\n")
    b.chmod(0o755)
    k = uml_kernel.given(b)
    assert k.info["release"] == "6.18.3" and k.has_seccomp
    assert k.describe()["guest_kernel_source"].startswith("a binary given by --uml-kernel")
    with pytest.raises(FileNotFoundError, match="not an executable"):
        uml_kernel.given(tmp_path / "missing")


def test_seccomp_is_refused_on_a_kernel_without_it(tmp_path, monkeypatch):
    from vm import uml

    b = tmp_path / "old-linux"
    b.write_text("#!/bin/sh\necho 6.1.192\n")
    b.chmod(0o755)
    assert uml.guest_kernel(str(b), "ptrace").info["release"] == "6.1.192"
    with pytest.raises(ValueError, match="use --uml-mode ptrace or auto"):
        uml.guest_kernel(str(b), "seccomp")
    assert uml.mode_args("seccomp") == ["seccomp=on"] and uml.mode_args("ptrace") == []
    old = uml.guest_kernel(str(b), "auto")
    assert uml.run_mode(old, "auto") == "ptrace"  # auto: ptrace where seccomp is missing
    new = tmp_path / "new-linux"
    new.write_text("#!/bin/sh\necho 7.2.13\n")
    new.chmod(0o755)
    assert uml.run_mode(uml.guest_kernel(str(new), "auto"), "auto") == "seccomp"
    assert uml.run_mode(uml.guest_kernel(str(new), "ptrace"), "ptrace") == "ptrace"


def test_uml_spec_fields_are_checked():
    with pytest.raises(ValueError, match="uml_mode"):
        ExperimentSpec.of(uml_mode="kvm")
    with pytest.raises(ValueError, match="uml_kernel"):
        ExperimentSpec.of(backend="netns", uml_kernel="/tmp/linux")
    assert ExperimentSpec.of(backend="uml", uml_mode="seccomp").uml.uml_mode == "seccomp"


class FakeBed:
    def __init__(self, **env) -> None:
        self.env = env

    def environment(self) -> dict:
        return self.env


def test_a_resumed_run_on_another_guest_kernel_or_mode_is_refused(tmp_path):
    from gamebed.sweep import same_guest_kernel

    summary = {"points": []}
    same_guest_kernel(summary, FakeBed(guest_kernel_digest="aaaa", uml_mode="ptrace"), tmp_path)
    assert summary["guest_kernel"] == {"guest_kernel_digest": "aaaa", "uml_mode": "ptrace"}
    summary["points"].append({"guests": 1})
    same_guest_kernel(summary, FakeBed(guest_kernel_digest="aaaa", uml_mode="ptrace"), tmp_path)
    for env in ({"guest_kernel_digest": "bbbb", "uml_mode": "ptrace"},
                {"guest_kernel_digest": "aaaa", "uml_mode": "seccomp"}):
        with pytest.raises(ValueError, match="--resume: the points in .* ran on guest kernel"):
            same_guest_kernel(summary, FakeBed(**env), tmp_path)
    netns = {"points": [{"guests": 1}], "guest_kernel": {}}
    same_guest_kernel(netns, FakeBed(backend="netns"), tmp_path)  # no guest kernel: no check


def test_a_second_build_waits_for_the_first_and_takes_its_kernel(tmp_path):
    """Two gamebeds at once (two runs, or a run and CI): the second waits on the cache's
    flock, says so, and takes the kernel the first built instead of building again."""
    import threading
    import time

    recipe, fake = fake_recipe(tmp_path), FakeBuild(tmp_path)
    started, release = threading.Event(), threading.Event()
    plain = fake.compile

    def slow_compile(*args):
        started.set()
        release.wait(10)
        return plain(*args)

    slow = Builder(fetch=fake.fetch, fallback=fake.fallback, compile=slow_compile,
                   smoke=lambda binary: "ok")
    got, lines = {}, []
    first = threading.Thread(target=lambda: got.update(a=uml_kernel.ensure(recipe, print,
                                                                           builder=slow)))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=lambda: got.update(
        b=uml_kernel.ensure(recipe, lines.append, builder=fake.builder())))
    second.start()
    time.sleep(0.5)
    assert second.is_alive() and any("another gamebed is building" in ln for ln in lines)
    release.set()
    first.join(10)
    second.join(10)
    assert fake.compiled == ["linux-source-7.2"]  # built once
    assert got["a"].digest == got["b"].digest
