from __future__ import annotations

import pytest

from mizzen.api.resources import (
    GroupVersionKind,
    ObjectMeta,
    Resource,
    ResourceKey,
    Service,
    ServicePort,
    Source,
    VirtualService,
)
from mizzen.config.store import ChangeSet, ConfigStore

ISTIO = "networking.istio.io"


def vs(
    name: str, hosts: tuple[str, ...] = ("reviews",), version: str = "v1", ns: str = "default"
) -> Resource:
    obj = VirtualService(ObjectMeta(name, ns), hosts)
    return Resource(GroupVersionKind(ISTIO, version, "VirtualService"), Source("a.yaml", 0), obj)


def svc(name: str, port: int = 9080) -> Resource:
    obj = Service(ObjectMeta(name, "default"), (ServicePort(port, "http"),), {"app": name})
    return Resource(GroupVersionKind("", "v1", "Service"), Source("a.yaml", 1), obj)


def test_apply_new_resources_reports_added_and_bumps_revision() -> None:
    store = ConfigStore()
    changes = store.apply([vs("a"), svc("b")])
    assert changes.added == (vs("a").key, svc("b").key)
    assert changes.updated == changes.deleted == ()
    assert not changes.empty
    assert store.revision == 1
    assert store.get(vs("a").key) == vs("a")


def test_identical_apply_is_a_no_op() -> None:
    store = ConfigStore()
    store.apply([vs("a"), svc("b")])
    changes = store.apply([vs("a"), svc("b")])
    assert changes == ChangeSet(unchanged=2)
    assert changes.empty
    assert store.revision == 1


def test_changed_resource_is_updated_in_place_keeping_order() -> None:
    store = ConfigStore()
    store.apply([vs("a"), svc("b")])
    changes = store.apply([vs("a", hosts=("ratings",))])
    assert changes.updated == (vs("a").key,)
    assert [r.meta.name for r in store.resources()] == ["a", "b"]
    assert store.revision == 2


@pytest.mark.parametrize(("first", "second"), [("v1alpha3", "v1"), ("v1beta1", "v1alpha3")])
def test_versions_of_one_kind_share_a_key(first: str, second: str) -> None:
    store = ConfigStore()
    store.apply([vs("x", version=first)])
    changes = store.apply([vs("x", version=second)])
    assert vs("x", version=first).key == vs("x", version=second).key
    assert changes.added == () and changes.updated == (vs("x").key,)
    assert len(store) == 1
    stored = store.get(ResourceKey(ISTIO, "VirtualService", "default", "x"))
    assert stored is not None and stored.gvk.version == second


def test_same_name_in_other_namespace_or_kind_is_another_key() -> None:
    store = ConfigStore()
    changes = store.apply([vs("x"), vs("x", ns="other"), svc("x")])
    assert len(changes.added) == 3


def test_duplicate_key_within_one_batch_stays_added_last_wins() -> None:
    store = ConfigStore()
    changes = store.apply([vs("a"), vs("a", hosts=("ratings",))])
    assert changes.added == (vs("a").key,) and changes.updated == ()
    stored = store.get(vs("a").key)
    assert stored is not None and stored.obj == vs("a", hosts=("ratings",)).obj


def test_delete_removes_and_ignores_unknown_keys() -> None:
    store = ConfigStore()
    store.apply([vs("a"), svc("b")])
    changes = store.delete([vs("a").key, vs("zz").key])
    assert changes.deleted == (vs("a").key,)
    assert changes.unchanged == 1
    assert store.get(vs("a").key) is None
    assert store.revision == 2
    assert store.delete([vs("zz").key]).empty
    assert store.revision == 2


def test_order_is_first_apply_and_readd_goes_last() -> None:
    store = ConfigStore()
    store.apply([svc("c"), vs("a"), svc("b")])
    store.delete([svc("c").key])
    store.apply([svc("c")])
    assert [r.meta.name for r in store.resources()] == ["a", "b", "c"]


def test_of_kind_filters_in_store_order() -> None:
    store = ConfigStore()
    store.apply([svc("b"), vs("a"), svc("c")])
    assert [r.meta.name for r in store.of_kind("Service")] == ["b", "c"]
    assert store.of_kind("Gateway") == ()


def test_replace_deletes_what_is_missing_in_one_revision() -> None:
    store = ConfigStore()
    store.apply([vs("a"), svc("b")])
    changes = store.replace([svc("b"), vs("c")])
    assert changes.added == (vs("c").key,)
    assert changes.deleted == (vs("a").key,)
    assert changes.unchanged == 1
    assert store.revision == 2
    assert store.replace([svc("b"), vs("c")]).empty
    assert store.revision == 2
