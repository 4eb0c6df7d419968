"""The `gamebed` command: one entry point, a subcommand per job.

Each subcommand imports its machinery lazily so `gamebed --help` is instant
and unprivileged jobs never load privileged code.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import sys
from pathlib import Path

from fpsmodel.cli import add_client_args, add_server_args, run_client, run_server
from gamebed import spec as spec_mod
from gamebed.fault import Fault
from gamebed.spec import CHOICES, MODES, ExperimentSpec, default

EPILOG = """\
typical use:
  gamebed play --players 4 --duration 10 --out /tmp/play    # game smoke test, no root
  sudo gamebed run --out results                              # the capacity sweep
  gamebed report results --sla-delay-ms 2                     # re-read a sweep, new SLA
  gamebed report runA runB --out cmp                          # runs side by side
  gamebed predict runA --guest-cpus 3 --players-total 10000   # another host, a fleet
  sudo gamebed run --backend libvirt --guests 1,2 --duration 10   # the same on real VMs
  sudo gamebed image build                                    # the guest image (cached)
  sudo gamebed launch --count 4 && sudo gamebed launch --destroy  # standing game VMs
  sudo gamebed clean                                          # remove what a killed run left
"""


def cmd_play(a: argparse.Namespace) -> int:
    """server + client on loopback; writes records and summary

    Smoke test of the game model on 127.0.0.1 (no root).
    """
    from analysis.point import play_summary
    from gamebed.play import play

    given = {"profile": a.profile, "players": a.players, "duration": a.duration,
             "dispatch": a.dispatch, "seed": a.seed, "rate": a.rate}
    spec = ExperimentSpec.from_dict({k: v for k, v in given.items() if v is not None})
    s = play(spec, a.out, play_summary)
    print(json.dumps(s, indent=2))
    print(f"records and summary in {a.out}", file=sys.stderr)
    return 0


# the CLI's name for a spec field, where it is not the field's own
ARG_OF = {"guest_counts": "guests", "repeats": "repeat", "faults": "fault",
          "vm_memory_mib": "vm_memory"}


def _field_value(name: str, value):
    """A flag's value as the spec's field holds it (None: not given)."""
    if value is None or (name == "guest_counts" and value == "auto"):
        return None  # auto: the counts are the search's
    if name == "faults":
        return tuple(value) or None
    if name == "uml_kernel":
        return str(Path(value).resolve())
    return value


def spec_from_args(a: argparse.Namespace) -> ExperimentSpec:
    """The spec: defaults, then the TOML file (if any), then the flags given."""
    over = {f.name: _field_value(f.name, getattr(a, ARG_OF.get(f.name, f.name), None))
            for f in dataclasses.fields(ExperimentSpec)}
    spec = getattr(a, "spec", None)
    return (ExperimentSpec.from_toml(spec, **over) if spec
            else ExperimentSpec.from_dict({k: v for k, v in over.items() if v is not None}))


def layers(spec: ExperimentSpec):
    """What vm/ and analysis/ hand a run of `spec` (gamebed/run.py Layers)."""
    import vm
    from analysis.capacity import Sla, search_step
    from analysis.point import machine_speed, summarizer
    from gamebed.run import Layers

    search = (search_step(Sla.of_run(spec.to_dict()), spec.search_max) if spec.searching
              else None)
    if spec.searching and spec.mix:  # a mixed host: every profile under its own SLA
        from analysis.mix import mix_search_step

        search = mix_search_step(spec.to_dict(), spec.search_max)
    return Layers(vm.testbeds, summarizer(spec.capture), search,
                  vm.boot_s_per_guest(spec.backend), speed=machine_speed)


def cmd_run(a: argparse.Namespace) -> int:
    """the sweep: guest counts x timestamp modes (root)

    Build N guests, play, record, tear down; for every guest count and mode. Writes
    DIR/summary.json, raw records per point, and the report.
    """
    from gamebed.run import Run
    from gamebed.sweep import run_sweep
    from vm import resolve_backend

    if a.max_guests is not None and a.guests != "auto":
        raise ValueError("--max-guests bounds a search: use it with --guests auto")
    spec, why = resolve_backend(spec_from_args(a), dry_run=a.dry_run)
    print(f"backend: {spec.backend} ({why})", file=sys.stderr)
    if a.guests == "auto":
        spec = spec.searching_up_to(a.max_guests, a.repeat)
    summary = run_sweep(Run.start(spec, a.out, layers(spec), a.dry_run, why), a.resume,
                        a.overwrite)
    if a.dry_run:
        return 0
    if not a.no_report:
        from analysis.report import write_report

        paths = write_report(a.out)
        print(f"report: {paths['html']}", file=sys.stderr)
    print(f"results in {a.out} ({len(summary['points'])} points; summary.json)")
    return 0


def cmd_image(a: argparse.Namespace) -> int:
    """build the guest kernel and images (root; cached)

    uml: gamebed's own user-mode Linux kernel (the newest fixed Debian sid linux-source,
    else bookworm's 6.1 with gamebed's fix; about 3 min on 2 cores) and its root disk.
    libvirt: Debian bookworm root (mmdebstrap) + fpsmodel + the patched virtio_net/tun
    modules + the cloud kernel, as a qcow2 base. Each is rebuilt only when an input changes.
    """
    from gamebed.proc import Runner
    from vm import image, uml_image, uml_kernel

    def say(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    out = {}
    if a.only in (None, "uml"):
        k = uml_kernel.ensure(progress=say, force=a.force)
        out["uml_kernel"] = {"binary": str(k.binary), **k.info}
        u = uml_image.build(Runner(), progress=say, force=a.force)
        out["uml_root"] = {"dir": str(u.dir), **u.info}
    if a.only in (None, "libvirt"):
        img = image.build(Runner(), progress=say, force=a.force)
        out["libvirt"] = {"dir": str(img.dir), **img.info}
    print(json.dumps(out, indent=2))
    return 0


def cmd_launch(a: argparse.Namespace) -> int:
    """start N game VMs and leave them running (root)

    Boot N game-server VMs behind the host stamper and shim, wait until each server answers,
    print how to reach them. `launch --destroy` removes every launched VM and tap.
    """
    from vm.launch import destroy, launch

    if a.destroy:
        for line in destroy():
            print(line)
        return 0
    from vm import resolve_backend

    spec, _ = resolve_backend(spec_from_args(a).replace(guest_counts=(a.count,),
                                                        modes=(a.mode,)), dry_run=a.dry_run)
    info = launch(spec, dry_run=a.dry_run)
    print(json.dumps(info, indent=2))
    return 0


def cmd_clean(a: argparse.Namespace) -> int:
    """remove what a killed run's manifest lists (root)"""
    from gamebed.manifest import STATE_DIR
    from gamebed.proc import Runner, require_net_admin
    from gamebed.resources import clean_manifest

    paths = a.manifest or sorted(STATE_DIR.glob("*.json"))
    if not paths:
        print(f"nothing to clean: no run manifests in {STATE_DIR}")
        return 0
    require_net_admin()
    for path in paths:
        for line in clean_manifest(Path(path), Runner()):
            print(line)
        print(f"cleaned {path}")
    return 0


def cmd_pcap(a: argparse.Namespace) -> int:
    """a captured point's uplink frames as pcapng (no root)

    Write POINT_DIR/capture.pcapng from the uplink.cap of a point run with --capture: every
    frame with its kernel arrival stamp to the ns, player inputs commented with guest,
    player, seq, server stamp, delay, stamp error.
    """
    from analysis.pcap import write_pcapng

    for d in a.point_dir:
        print(json.dumps(write_pcapng(d)))
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    """analyse a results directory, or compare several (no root)

    Recompute statistics, capacity and plots from raw records only. With two or more
    directories: a comparison (capacity per run and mode, delay per point with CIs,
    differences to the first run) in --out.
    """
    from analysis.capacity import SlaTerms

    terms = SlaTerms(a.sla_delay_ms, a.sla_stat, a.sla_loss, a.sla_terms)
    if len(a.dir) > 1:
        from analysis.compare import write_comparison

        paths = write_comparison(a.dir, a.out or Path("comparison"), terms,
                                 a.allow_load_difference, a.allow_kernel_difference)
    else:
        from analysis.report import write_report

        paths = write_report(a.dir[0], terms, a.players_total)
    print(paths["md"].read_text())
    print(f"report: {paths['html']}", file=sys.stderr)
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    """capacity on other hosts, from finished runs alone (no root)

    Calibrates the capacity model (docs/model.md) on the runs' own records: each guest's
    CPU cost at its tick rate and the part it cannot shed, the CPU the guests actually
    had, and how the mean delay grew with their CPU's utilisation. Then predicts each
    mode's capacity, with an interval, on hosts with other guest-CPU budgets, and the
    hosts needed for a player count. --register writes the prediction as a file to
    commit before measuring, with its commit, the digests of the model's and the
    scorer's code and a frozen copy of the scorer; --check sets it beside measured
    runs and scores them with that copy.
    """
    from analysis import forecast as F

    if a.check:
        if a.runs:
            raise ValueError("--check reads the predictions and the --measured runs; give "
                             "no calibration runs with it")
        predictions = json.loads(a.check.read_text())
        scorer = F.registered_scorer(a.check, predictions)
        ch = F.check(predictions, dict(a.measured or []), scorer)
        if not ch["rows"]:
            raise ValueError("no --measured run matches a case of the predictions: give "
                             "CASE=DIR with CASE as the predictions name it")
        print("\n".join(F.check_lines(ch)))
        if a.later_rules and scorer.registered:  # beside the registered result, labelled
            later = F.check(predictions, dict(a.measured or []))
            print("\nLater reading, NOT the registered result: the same measurements "
                  "scored by today's rules (analysis/scorer.py):")
            print("\n".join(F.check_lines(later)))
            ch["later_reading"] = later
        if a.json:
            a.json.write_text(json.dumps(ch, indent=1) + "\n")
        return 0
    if not a.runs:
        raise ValueError("give one or more finished run directories to calibrate on")
    played = {F.run_summary(r)["spec"].get("profile") for r in a.runs}
    cases = a.guest_cpus or [F.own_case(a.runs[0])]
    if a.profile:
        if played != {a.profile}:
            raise ValueError(f"--profile {a.profile}: the runs played {sorted(map(str, played))}"
                             f"; calibrate on runs of {a.profile} (gamebed run --profile "
                             f"{a.profile})")
    f = F.forecast(a.runs, cases, a.memory_gib * 1024 if a.memory_gib else None)
    print("\n".join(F.forecast_lines(f, a.players_total)))
    if a.register:
        print(f"registered: {F.register(f, a.register)} (commit it before measuring)",
              file=sys.stderr)
    if a.json:
        a.json.write_text(json.dumps(f, indent=1) + "\n")
    return 0


def case_list(text: str) -> list:
    """--guest-cpus: comma-separated guest cores (0.45, 3) or `dynamic`."""
    from analysis.forecast import Case

    try:
        return [Case.parse(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def measured_arg(text: str) -> tuple[str, Path]:
    case, sep, path = text.partition("=")
    if not sep or not case or not path:
        raise argparse.ArgumentTypeError(f"--measured is CASE=DIR, not {text!r}")
    return case, Path(path)


def counts(text: str) -> tuple[int, ...] | str:
    """--guests: comma-separated guest counts, each once; or `auto` (a search)."""
    if text == "auto":
        return text
    try:
        vals = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated guest counts such as 1,2,4, not {text!r}") from None
    if any(not 1 <= v <= spec_mod.MAX_GUESTS for v in vals):
        raise argparse.ArgumentTypeError(f"each count must be 1..{spec_mod.MAX_GUESTS}")
    if len(set(vals)) != len(vals):
        raise argparse.ArgumentTypeError(f"each count once, not {text!r}")
    return vals


def modes(text: str) -> tuple[str, ...]:
    vals = tuple(text.split(","))
    if set(vals) - set(MODES):
        raise argparse.ArgumentTypeError(f"modes are among {','.join(MODES)}, not {text!r}")
    return vals


def add_profile_arg(p: argparse.ArgumentParser, given: str | None = None) -> None:
    from gamebed.spec import PRESETS

    p.add_argument("--profile", default=given, metavar="NAME",
                   help=f"the game (docs/workloads.md): {', '.join(PRESETS)}, or one a --spec "
                        f"file defines; sets players, tick rate, inputs and the SLA, which "
                        f"flags may still override (default {default('profile')}, the "
                        "paper's game)")


def mix_list(text: str) -> tuple[str, ...]:
    from gamebed.spec import parse_mix

    entries = tuple(e.strip() for e in text.split(",") if e.strip())
    try:
        parse_mix(entries)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return entries


def add_guest_args(p: argparse.ArgumentParser) -> None:
    """The spec options that shape the guests: shared by `run` and `launch`."""
    p.add_argument("--spec", type=Path, help="TOML experiment spec, keys = the field names "
                                             "of gamebed/spec.py (flags override it)")
    add_profile_arg(p)
    p.add_argument("--mix", type=mix_list, metavar="NAME:SHARE,...",
                   help="a host of several games, e.g. tsai2009:3,tick128:1: each count's "
                        "guests in these shares (largest remainder, one guest each at "
                        "least), guest i playing the same game at every count; the report "
                        "gives each profile's capacity under its own SLA and the mix's")
    p.add_argument("--players", type=int, help="players per guest (default: the profile's, "
                                               f"{default('players')} for tsai2009)")
    p.add_argument("--placement", choices=CHOICES["placement"],
                   help=f"restricted (default {default('placement')}): shim on CPU 0, guests "
                        "on the rest; dynamic: everyone floats")
    p.add_argument("--stamper", choices=CHOICES["stamper"],
                   help=f"who appends host stamps (default {default('stamper')}): the tc BPF "
                        "stamper, or the AF_PACKET shim itself")
    p.add_argument("--backend", choices=CHOICES["backend"],
                   help=f"default {default('backend')}: uml where user-mode Linux runs, else "
                        "netns. uml: each guest is its own Linux kernel in a host process "
                        "that waits for its CPU like a Xen guest; netns: guests are network "
                        "namespaces on the host kernel (no guest CPU to wait for); libvirt: "
                        "QEMU VMs (gamebed image, patched virtio_net in host mode)")
    p.add_argument("--libvirt-uri", help=f"libvirt URI (default {default('libvirt_uri')}; "
                                         "qemu+ssh://HOST/system for another host)")
    p.add_argument("--accel", choices=CHOICES["accel"],
                   help="VM accelerator; auto (default): KVM where a guest boots with it, else "
                        "TCG (no /dev/kvm, a PVM-only /dev/kvm, or a probe guest that fails "
                        "to start or boot); kvm forces it")
    p.add_argument("--uml-mode", choices=CHOICES["uml_mode"],
                   help=f"uml: how a guest kernel runs its processes (default "
                        f"{default('uml_mode')}); ptrace: each guest syscall stops the "
                        "process for its kernel; seccomp: a filter hands it to a signal "
                        "handler in the process (fewer switches; trusted guest code only)")
    p.add_argument("--uml-kernel", type=Path, metavar="PATH",
                   help="uml: run this UML binary instead of gamebed's own kernel (built "
                        "once and cached: vm/uml_kernel.py)")
    p.add_argument("--dispatch", choices=CHOICES["dispatch"],
                   help=f"game server event dispatch (default {default('dispatch')})")
    p.add_argument("--vm-memory", type=int, metavar="MIB",
                   help=f"memory per VM (default {default('vm_memory_mib')})")
    p.add_argument("--dry-run", action="store_true",
                   help="print the privileged commands instead of running them")


def add_sla_args(p: argparse.ArgumentParser) -> None:
    """The SLA a run is judged by (its search's and its report's)."""
    p.add_argument("--sla-delay-ms", type=float,
                   help=f"SLA: delay limit (default {default('sla_delay_ms'):g} ms), for the "
                        "search and the report")
    p.add_argument("--sla-stat", choices=spec_mod.SLA_STATS,
                   help=f"SLA: which delay statistic (default {default('sla_stat')})")
    p.add_argument("--sla-loss", type=float,
                   help=f"SLA: largest loss ratio (default {default('sla_loss'):g})")
    p.add_argument("--sla-terms", choices=spec_mod.SLA_TERMS,
                   help="players (the default): delay, loss and the ticks every player "
                        "received (what players feel; --guests auto searches on it); paper: "
                        "delay and loss alone (Tsai 2009's terms: what host stamps buy)")


def add_cpu_args(p: argparse.ArgumentParser) -> None:
    """The guests' CPU: per-guest caps and weights, and a budget for all of them."""
    p.add_argument("--cpu-cap", type=float, metavar="SHARE",
                   help="per-guest CPU share via cgroup cpu quota, e.g. 0.1 (netns, uml)")
    p.add_argument("--cpu-weight", type=int, metavar="W",
                   help="per-guest relative CPU weight, Xen credit style: 256 = 1x (netns, uml)")
    p.add_argument("--guest-slice-ms", type=float, metavar="X",
                   help="every guest thread's own scheduler slice, 0.1-100 ms (Linux 6.12+ "
                        "EEVDF, sched_setattr's sched_runtime; netns, uml), read back and "
                        "recorded in point.json: e.g. 30 for Xen credit's slice")
    p.add_argument("--guest-cpus", type=float, metavar="K",
                   help="a smaller host, emulated: all guests together get K cores of their "
                        "CPUs, e.g. 0.45 (uml, netns; restricted placement). The CPU they "
                        "leave goes to a competing process, so a guest waits for its CPU as "
                        "it would on a host with fewer cores; cpu.json records what they "
                        "actually got (gamebed predict reads it)")
    p.add_argument("--guest-cpus-by", choices=CHOICES["guest_cpus_by"],
                   help=f"how --guest-cpus holds them to K (default "
                        f"{default('guest_cpus_by')}): a competing process at a CFS weight "
                        "that leaves them K, or a CFS quota of K cores with a 1 ms period")


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("results"),
                   help="results directory (default %(default)s); one holding an earlier "
                        "run is refused unless --resume or --overwrite")
    p.add_argument("--resume", action="store_true",
                   help="keep the points an earlier run in --out measured (same spec only) "
                        "and measure the rest")
    p.add_argument("--overwrite", action="store_true",
                   help="remove an earlier run's points and reports from --out first")
    p.add_argument("--guests", type=counts,
                   help="guest counts, e.g. 1,2,4 (default: the backend's, "
                        + "; ".join(f"{b} {','.join(map(str, c))}"
                                    for b, c in spec_mod.DEFAULT_COUNTS.items()) + "); or "
                        "auto: search each mode's capacity (double the count until a mode "
                        "fails, then bisect to about 10%%), both modes at every count tried")
    p.add_argument("--max-guests", type=int, metavar="N",
                   help="--guests auto: the largest count to try (default: the largest of "
                        "the backend's default counts)")
    p.add_argument("--repeat", type=int, metavar="K",
                   help="points per count and mode (default 1; 3 with --guests auto); the "
                        "report judges a count on the CI over its repeats and shows each "
                        "figure's spread; repeat r plays seed + r in both modes")
    add_sla_args(p)
    p.add_argument("--modes", type=modes, help=f"timestamp modes (default {','.join(MODES)})")
    p.add_argument("--duration", type=float,
                   help=f"seconds of play per point (default {default('duration'):g})")
    add_cpu_args(p)
    p.add_argument("--server-work-us", type=float, metavar="US",
                   help="simulated game logic: CPU microseconds per player per tick "
                        f"(default {default('server_work_us'):g}, as the paper's model server)")
    p.add_argument("--seed", type=int, help=f"seed of the input schedules (default "
                                            f"{default('seed')})")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.add_argument("--fresh-guests", dest="reuse_guests", action="store_false", default=None,
                   help="boot every count's guests afresh (default: a count keeps the last "
                        "count's guests and boots only the new ones, or stops the extra)")
    p.add_argument("--capture", action="store_true", default=None,
                   help="keep every uplink frame with its stamp; each point gets a "
                        "capture.pcapng with per-input comments (Wireshark, tshark)")
    p.add_argument("--fault", action="append", type=fault_arg, metavar="KIND:GUEST@S[+R]",
                   help="break a guest during every point's load: server:1@4 kills guest "
                        "1's game server 4 s in (SIGKILL), +R starts a new one R s later; "
                        "guest:0@3 kills the whole guest (uml: its kernel's process). "
                        "Repeatable, one per guest. The report gives availability per guest "
                        "(inputs the server got / inputs sent), the inputs lost to the fault "
                        "apart from those lost to load, and the time until it answered again")
    p.add_argument("--wan", metavar="NETEM",
                   help="players on a real network: netem on the client's side, both ways, "
                        'e.g. "delay 30ms 5ms loss 0.5%%" (clock sync is exempt). The report '
                        "splits each input's path at the host stamp (network / host), and "
                        "capacity judges the host's share only")
    add_guest_args(p)


def fault_arg(text: str) -> str:
    """--fault: checked for form here, against the backend and counts in the spec."""
    try:
        return Fault.parse(text).text()
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {str(e).split(': ', 1)[1]}") from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="gamebed", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="How many game-server VMs fit on one host before players feel it? "
                    "gamebed runs a model FPS game in N guests and measures the delay "
                    "of player inputs with guest-kernel and host-supplied timestamps.")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for add in (_add_play, _add_run, _add_report, _add_predict, _add_pcap, _add_image,
                _add_launch, _add_clean, _add_components):
        add(sub)
    return ap


def _command(sub, name: str, func, text: str | None = None,
             add_help: bool = True) -> argparse.ArgumentParser:
    """The subcommand `name`, carried out by func(args); its help is `text`, else func's
    docstring: the first line, and the paragraph after it as the description."""
    head, _, body = inspect.cleandoc(text or func.__doc__).partition("\n\n")
    p = sub.add_parser(name, help=head, description=" ".join(body.split()) or None,
                       add_help=add_help)
    p.set_defaults(func=func)
    return p


def _add_play(sub) -> None:
    p = _command(sub, "play", cmd_play)
    add_profile_arg(p)
    p.add_argument("--players", type=int, help="players (default: the profile's, "
                                               f"{default('players')} for tsai2009)")
    p.add_argument("--duration", type=float, default=default("duration"),
                   help="seconds (default %(default)s)")
    p.add_argument("--out", type=Path, default=Path("play-out"))
    p.add_argument("--dispatch", choices=CHOICES["dispatch"], default=default("dispatch"))
    p.add_argument("--seed", type=int, default=default("seed"))
    p.add_argument("--rate", type=float,
                   help="inputs/s per player (default: the profile's, "
                        f"{default('rate'):g} for tsai2009)")


def _add_run(sub) -> None:
    p = _command(sub, "run", cmd_run)
    add_run_args(p)


def _add_report(sub) -> None:
    p = _command(sub, "report", cmd_report)
    p.add_argument("dir", type=Path, nargs="+", help="results directories (of `gamebed run`)")
    p.add_argument("--out", type=Path,
                   help="where a comparison goes (default ./comparison)")
    p.add_argument("--allow-load-difference", action="store_true",
                   help="compare runs whose load (players, rate, duration, seed) differs")
    p.add_argument("--allow-kernel-difference", action="store_true",
                   help="compare runs whose guests ran different kernels or UML modes "
                        "(to compare the kernels themselves)")
    p.add_argument("--sla-delay-ms", type=float,
                   help="delay limit in ms (default: the run's, from its spec; else "
                        f"{default('sla_delay_ms'):g})")
    p.add_argument("--sla-stat", choices=spec_mod.SLA_STATS,
                   help=f"delay statistic (default: the run's; else {default('sla_stat')})")
    p.add_argument("--sla-loss", type=float,
                   help=f"largest loss ratio (default: the run's; else {default('sla_loss'):g})")
    p.add_argument("--sla-terms", choices=spec_mod.SLA_TERMS,
                   help="which terms judge a count (default: the run's; else players). The "
                        "report gives both capacities side by side either way")
    p.add_argument("--players-total", type=int, metavar="N", default=10000,
                   help="the capacity model's hosts-needed line: hosts for N concurrent "
                        "players (default %(default)s; 0: no model section)")


def _add_predict(sub) -> None:
    p = _command(sub, "predict", cmd_predict)
    p.add_argument("runs", type=Path, nargs="*", metavar="RUN",
                   help="finished `gamebed run` directories of one game to calibrate on "
                        "(e.g. one with whole guest CPUs and one with --guest-cpus 0.6)")
    p.add_argument("--guest-cpus", type=case_list, metavar="K[,K...]",
                   help="hosts to predict: guest cores each (0.45: a share of one CPU; 3: "
                        "three CPUs), or dynamic (every CPU, shared with the host side); "
                        "default: the first run's own host")
    add_profile_arg(p)
    p.add_argument("--players-total", type=int, metavar="N",
                   help="also print the hosts needed for N concurrent players, per mode")
    p.add_argument("--memory-gib", type=float, metavar="GIB",
                   help="the predicted host's memory (default: this machine's); guests "
                        "beyond it at their measured PSS do not fit")
    p.add_argument("--register", type=Path, metavar="FILE",
                   help="write the predictions (every interval, the model's digest) to "
                        "FILE, e.g. predictions.json, to commit before measuring")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the result as JSON")
    p.add_argument("--check", type=Path, metavar="PREDICTIONS",
                   help="the model check: a registered predictions file beside --measured "
                        "runs (no calibration runs), scored by the scorer registered with "
                        "it (its frozen copy beside it, digest checked)")
    p.add_argument("--later-rules", action="store_true",
                   help="with --check: also show the same measurements scored by today's "
                        "rules, labelled as a later reading, after the registered result")
    p.add_argument("--measured", type=measured_arg, action="append", metavar="CASE=DIR",
                   help="with --check: the run that measured CASE (as the predictions name "
                        "it, e.g. 0.45=results/k045); repeatable")


def _add_pcap(sub) -> None:
    p = _command(sub, "pcap", cmd_pcap)
    p.add_argument("point_dir", type=Path, nargs="+")


def _add_image(sub) -> None:
    p = _command(sub, "image", cmd_image)
    p.add_argument("action", choices=("build",))
    p.add_argument("--only", choices=("uml", "libvirt"), help="build one backend's only")
    p.add_argument("--force", action="store_true",
                   help="rebuild even if cached (the UML kernel: fetch the source anew)")


def _add_launch(sub) -> None:
    p = _command(sub, "launch", cmd_launch)
    p.add_argument("--count", type=int, default=1, help="how many game VMs")
    p.add_argument("--mode", choices=MODES, default="host",
                   help="timestamp mode of the guests' receive path (default %(default)s)")
    p.add_argument("--destroy", action="store_true", help="destroy what launch started")
    add_guest_args(p)


def _add_clean(sub) -> None:
    p = _command(sub, "clean", cmd_clean)
    p.add_argument("manifest", nargs="*", type=Path,
                   help="manifest files (default: every one in /run/gamebed)")


def _add_components(sub) -> None:
    """The parts a run starts, each runnable alone."""
    # the shim parses its own options (python -m hostside.shim --help): its module is
    # loaded only when it runs
    _command(sub, "shim", None, "the AF_PACKET timestamping shim (root; its options: gamebed "
                                "shim --help)", add_help=False)
    p = _command(sub, "server", run_server, "one game server (what runs inside each guest)")
    add_server_args(p)
    p = _command(sub, "client", run_client, "the load generator and latency recorder")
    add_client_args(p)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["shim"]:  # the shim's options are its own (python -m hostside.shim)
        from hostside.shim import main as shim_main

        return shim_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except (PermissionError, FileNotFoundError, ValueError, RuntimeError, TimeoutError) as e:
        print(f"gamebed {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gamebed {args.cmd}: interrupted; cleaned up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
