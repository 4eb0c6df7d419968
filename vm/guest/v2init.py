"""PID 1 of gamebed's cgroup-v2 test host without systemd (vm/v2host.py; root in a VM).

Mounts what a bare host has (proc, sysfs, cgroup2 alone at /sys/fs/cgroup, tmpfs for
/run and /dev/shm), brings loopback up, runs /gamebed-out/job.sh with its output
in job.log and its exit status in rc, reaps every orphan meanwhile (it is PID 1), and
powers the machine off."""

import ctypes
import os
import subprocess

OUT = "/gamebed-out"
MOUNTS = (("proc", "/proc", "proc", ""), ("sysfs", "/sys", "sysfs", ""),
          ("cgroup2", "/sys/fs/cgroup", "cgroup2", "nsdelegate"),
          ("tmpfs", "/run", "tmpfs", "mode=755"), ("tmpfs", "/dev/shm", "tmpfs", "mode=1777"),
          ("devpts", "/dev/pts", "devpts", ""))  # /tmp stays the host's: a checkout may be there


def mount_all() -> None:
    for src, target, fstype, opts in MOUNTS:
        os.makedirs(target, exist_ok=True)
        args = ["mount", "-t", fstype, *(["-o", opts] if opts else []), src, target]
        subprocess.run(args, check=False)


def main() -> None:
    mount_all()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    os.environ.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    with open(f"{OUT}/job.log", "wb") as log:
        job = subprocess.Popen(["/bin/sh", f"{OUT}/job.sh"], stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
        while True:  # PID 1 reaps every orphan, the job last
            pid, status = os.wait()
            if pid == job.pid:
                break
    with open(f"{OUT}/rc", "w") as f:
        f.write(f"{os.waitstatus_to_exitcode(status)}\n")
    os.sync()
    ctypes.CDLL(None).reboot(0x4321FEDC)  # LINUX_REBOOT_CMD_POWER_OFF


if __name__ == "__main__":
    main()
