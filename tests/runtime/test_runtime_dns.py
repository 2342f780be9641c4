from __future__ import annotations

import os
from pathlib import Path

from mizzen.runtime.dns import (
    RESOLV_CONF,
    names_for_services,
    remove_pod_dns,
    render_hosts,
    service_names,
    write_hosts,
    write_in_place,
    write_pod_dns,
)


def test_service_names_same_namespace_has_bare_name() -> None:
    assert service_names("web", "default", "default") == [
        "web",
        "web.default",
        "web.default.svc",
        "web.default.svc.cluster.local",
    ]


def test_service_names_other_namespace() -> None:
    assert service_names("db", "data", "default", domain="example.internal") == [
        "db.data",
        "db.data.svc",
        "db.data.svc.example.internal",
    ]


def test_render_hosts() -> None:
    names = names_for_services(
        [("web", "default", "198.19.0.10"), ("db", "data", "198.19.0.2")], "default"
    )
    assert render_hosts("client", "198.18.0.2", names) == (
        "# written by mizzen: rewritten in place when services change\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "198.18.0.2\tclient\n"
        "198.19.0.2\tdb.data db.data.svc db.data.svc.cluster.local\n"
        "198.19.0.10\tweb web.default web.default.svc web.default.svc.cluster.local\n"
    )


def test_render_hosts_is_deterministic_and_pod_name_wins() -> None:
    a = render_hosts("p", "198.18.0.5", {"b": "198.19.0.1", "a": "198.19.0.1", "p": "1.1.1.1"})
    b = render_hosts("p", "198.18.0.5", {"a": "198.19.0.1", "p": "1.1.1.1", "b": "198.19.0.1"})
    assert a == b
    assert "1.1.1.1" not in a


def test_resolv_conf_never_reaches_out() -> None:
    lines = RESOLV_CONF.splitlines()
    assert "nameserver 127.0.0.1" in lines
    assert "options timeout:1 attempts:1" in lines
    assert not any(line.startswith(("search", "domain")) for line in lines)
    assert [line for line in lines if line.startswith("nameserver")] == ["nameserver 127.0.0.1"]


def test_write_in_place_keeps_inode(tmp_path: Path) -> None:
    f = tmp_path / "hosts"
    write_in_place(f, "a much longer first version\n")
    inode = os.stat(f).st_ino
    write_in_place(f, "short\n")
    assert os.stat(f).st_ino == inode
    assert f.read_text() == "short\n"


def test_write_and_remove_pod_dns(tmp_path: Path) -> None:
    d = write_pod_dns("mz-x.ns.pod", "127.0.0.1\tlocalhost\n", etc_netns=tmp_path)
    assert (d / "hosts").read_text() == "127.0.0.1\tlocalhost\n"
    assert (d / "resolv.conf").read_text() == RESOLV_CONF
    assert remove_pod_dns("mz-x.ns.pod", etc_netns=tmp_path)
    assert not d.exists()
    assert not remove_pod_dns("mz-x.ns.pod", etc_netns=tmp_path)


def test_write_hosts_shorthand(tmp_path: Path) -> None:
    d = write_hosts("mz-x.ns.pod", "pod", "198.18.0.2", {"web": "198.19.0.1"}, tmp_path)
    assert (d / "hosts").read_text() == render_hosts("pod", "198.18.0.2", {"web": "198.19.0.1"})
