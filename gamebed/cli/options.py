"""The `gamebed` command's shared options: the flags that make a spec, and the
argument types (no privileges; parsing only).  The commands' modules add them."""

from __future__ import annotations

import argparse
import inspect
from dataclasses import dataclass
from pathlib import Path

from gamebed import spec as spec_mod
from gamebed.fault import Fault
from gamebed.spec import CHOICES, MODES, ExperimentSpec, default
from gamebed.workload import SLA_STATS


def command(sub, name: str, func, text: str | None = None,
            add_help: bool = True) -> argparse.ArgumentParser:
    """The subcommand `name`, carried out by func(args); its help is `text`, else func's
    docstring: the first line, and the paragraph after it as the description."""
    head, _, body = inspect.cleandoc(text or func.__doc__).partition("\n\n")
    p = sub.add_parser(name, help=head, description=" ".join(body.split()) or None,
                       add_help=add_help)
    p.set_defaults(func=func)
    return p


# the CLI's name for a spec field, where it is not the field's own
ARG_OF = {"guest_counts": "guests", "repeats": "repeat", "faults": "fault",
          "vm_memory_mib": "vm_memory"}

def _field_value(name: str, value):
    """A flag's value as the spec's field holds it (None: not given)."""
    if value is None or (name == "guest_counts" and value == "auto"):
        return None  # auto: the counts are the search's
    if name == "faults":
        return tuple(value) or None
    if name in ("uml_kernel", "ssh_config"):
        return str(Path(value).resolve())
    return value

def spec_from_args(a: argparse.Namespace) -> ExperimentSpec:
    """The spec: defaults, then the TOML file (if any), then the flags given."""
    over = {key: _field_value(key, getattr(a, ARG_OF.get(key, key), None))
            for key in spec_mod.KEYS}
    spec = getattr(a, "spec", None)
    return (ExperimentSpec.from_toml(spec, **over) if spec
            else ExperimentSpec.from_dict({k: v for k, v in over.items() if v is not None}))

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
    from gamebed.workload import PRESETS

    p.add_argument("--profile", default=given, metavar="NAME",
                   help=f"the game (docs/workloads.md): {', '.join(PRESETS)}, or one a --spec "
                        f"file defines; sets players, tick rate, inputs and the SLA, which "
                        f"flags may still override (default {default('profile')}, the "
                        "paper's game)")

def mix_list(text: str) -> tuple[str, ...]:
    from gamebed.workload import parse_mix

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

def sla_help(of_report: bool) -> dict[str, str]:
    """Each --sla-* flag's help: for a run (its search's and its report's SLA) or for
    `report` (a finished run judged again, by default by its own SLA)."""
    if of_report:
        return {"delay": "delay limit in ms (default: the run's, from its spec; else "
                         f"{default('sla_delay_ms'):g})",
                "stat": f"delay statistic (default: the run's; else {default('sla_stat')})",
                "loss": f"largest loss ratio (default: the run's; else {default('sla_loss'):g})",
                "terms": "which terms judge a count (default: the run's; else players). The "
                         "report gives both capacities side by side either way"}
    return {"delay": f"SLA: delay limit (default {default('sla_delay_ms'):g} ms), for the "
                     "search and the report",
            "stat": f"SLA: which delay statistic (default {default('sla_stat')})",
            "loss": f"SLA: largest loss ratio (default {default('sla_loss'):g})",
            "terms": "players (the default): delay, loss and the ticks every player "
                     "received (what players feel; --guests auto searches on it); paper: "
                     "delay and loss alone (Tsai 2009's terms: what host stamps buy)"}


def add_sla_args(p: argparse.ArgumentParser, of_report: bool = False) -> None:
    """The SLA a run is judged by (its search's and its report's), or with `of_report`
    the terms `gamebed report` judges a finished run by."""
    text = sla_help(of_report)
    p.add_argument("--sla-delay-ms", type=float, help=text["delay"])
    p.add_argument("--sla-stat", choices=SLA_STATS, help=text["stat"])
    p.add_argument("--sla-loss", type=float, help=text["loss"])
    p.add_argument("--sla-terms", choices=spec_mod.SLA_TERMS, help=text["terms"])


@dataclass(frozen=True)
class Option:
    """One command-line option as data: a table of them is added in one loop, so a
    command's options read as a list, not as repeated calls."""

    flag: str
    help: str
    type: type | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None

    def add_to(self, p: argparse.ArgumentParser) -> None:
        kw = {"type": self.type, "metavar": self.metavar, "choices": self.choices}
        p.add_argument(self.flag, help=self.help, **{k: v for k, v in kw.items() if v})


def add_options(p: argparse.ArgumentParser, options: tuple[Option, ...]) -> None:
    for o in options:
        o.add_to(p)


def cpu_options() -> tuple[Option, ...]:
    """The guests' CPU: per-guest caps and weights, and a budget for all of them."""
    return (
        Option("--cpu-cap", "per-guest CPU share via cgroup cpu quota, e.g. 0.1 (netns, "
               "uml)", float, "SHARE"),
        Option("--cpu-weight", "per-guest relative CPU weight, Xen credit style: 256 = 1x "
               "(netns, uml)", int, "W"),
        Option("--guest-slice-ms", "every guest thread's own scheduler slice, 0.1-100 ms "
               "(Linux 6.12+ EEVDF, sched_setattr's sched_runtime; netns, uml), read back "
               "and recorded in point.json: e.g. 30 for Xen credit's slice", float, "X"),
        Option("--guest-cpus", "a smaller host, emulated: all guests together get K cores "
               "of their CPUs, e.g. 0.45 (uml, netns; restricted placement). The CPU they "
               "leave goes to a competing process, so a guest waits for its CPU as it "
               "would on a host with fewer cores; cpu.json records what they actually got "
               "(gamebed predict reads it)", float, "K"),
        Option("--guest-cpus-by", f"how --guest-cpus holds them to K (default "
               f"{default('guest_cpus_by')}): a competing process at a CFS weight that "
               "leaves them K, or a CFS quota of K cores with a 1 ms period",
               choices=tuple(CHOICES["guest_cpus_by"])))


CLIENT_OPTIONS = (
    Option("--client-shards", "split the players over N client processes, each owning a "
           "block of the guests and judged for punctuality on its own (default 1); with "
           "--client-cpus each on its own CPU: a load generator for a host bigger than one "
           "client core can drive", int, "N"),
    Option("--client-cpus", "the CPUs the client shards run on, in turn, e.g. 0,2 "
           "(default: the host side's)", str, "LIST"),
    Option("--players-on", "run the players on other machines, over ssh: shard i on the "
           "i-th of these ssh destinations, in turn (at least one shard each). Each must "
           "route the guests' subnet (198.18.0.0/16) to this host and have python3 with "
           "cryptography; its clock is measured against this one's and its records moved "
           "onto it (docs/architecture.md, \"Where the players run\")", str, "HOST[,HOST]"),
    Option("--ssh-config", "the ssh config file for --players-on (ssh -F; default: the "
           "user's own)", str, "FILE"),
    Option("--players-python", "the python on the player machines (default python3)",
           str, "PATH"))
SEARCH_OPTIONS = (
    Option("--max-guests", "--guests auto: the largest count to try (default: the largest "
           "of the backend's default counts)", int, "N"),
    Option("--repeat", "points per count and mode (default 1; 3 with --guests auto); the "
           "report judges a count on the CI over its repeats and shows each figure's "
           "spread; repeat r plays seed + r in both modes", int, "K"))


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
    add_options(p, SEARCH_OPTIONS)
    add_sla_args(p)
    p.add_argument("--modes", type=modes, help=f"timestamp modes (default {','.join(MODES)})")
    p.add_argument("--duration", type=float,
                   help=f"seconds of play per point (default {default('duration'):g})")
    add_options(p, cpu_options())
    add_options(p, CLIENT_OPTIONS)
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
    p.add_argument("--retries", type=int, metavar="N",
                   help=f"measure a point again, up to N times, where the machine took it "
                        f"away: a client stall with no recorded cause, or more of the load "
                        f"stolen (hypervisor steal, a CPU quota) than the analysis leaves out "
                        f"(default {default('retries')}; docs/records.md, stalls)")
    p.add_argument("--stalls", metavar="MS/EVERY_S[@FROM]",
                   help="gamebed's own stalls: freeze the whole testbed (client, shim, "
                        "guests) MS ms every EVERY_S s of each load at FROM guests or more, "
                        "as a hypervisor stops a VM, e.g. 100ms/3s@24 (v1 freezer); each "
                        "point records them (stalls_injected.csv)")
    add_guest_args(p)

def fault_arg(text: str) -> str:
    """--fault: checked for form here, against the backend and counts in the spec."""
    try:
        return Fault.parse(text).text()
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {str(e).split(': ', 1)[1]}") from None
