"""podfs's pure part: which host mounts a container's root carries over."""

from __future__ import annotations

from pathlib import Path

from mizzen.runtime.podfs import host_mounts

MOUNTINFO = """\
22 1 254:0 / / rw - ext4 /dev/vda rw
23 22 0:5 / /proc rw - proc proc rw
24 22 0:6 / /sys rw - sysfs sysfs rw
25 24 0:7 / /sys/fs/cgroup rw - tmpfs tmpfs rw
26 22 0:8 / /dev rw - devtmpfs dev rw
27 26 0:9 / /dev/shm rw - tmpfs tmpfs rw
28 22 0:10 / /run/netns rw - tmpfs tmpfs rw
29 22 254:0 /etc/netns/p/hosts /etc/hosts rw - ext4 /dev/vda rw
30 22 0:11 / /run/mizzen/m/pods/ns.p/fs/app rw - tmpfs tmpfs rw
31 22 0:12 / /mnt/with\\040space rw - tmpfs tmpfs rw
"""


def test_only_top_mounts_and_never_the_containers_own_state() -> None:
    state = Path("/run/mizzen/m/pods/ns.p/fs/app")
    assert host_mounts(MOUNTINFO, state) == [
        "/dev",
        "/etc/hosts",  # the pod's own hosts file, bound by `ip netns exec`
        "/mnt/with space",
        "/proc",
        "/run/netns",
        "/sys",
    ]
