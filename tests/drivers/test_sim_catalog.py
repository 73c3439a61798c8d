"""Object catalog: the packaged file is rich enough; bad user files fail with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.sim.catalog import FAMILIES, USER_NAME, CatalogError, load_catalog


def test_packaged_catalog_has_both_splits_over_all_families() -> None:
    catalog = load_catalog()
    seen, unseen = catalog.split("seen"), catalog.split("unseen")
    assert len(seen) >= 40
    assert len(unseen) >= 20
    assert {o.family for o in seen} == set(FAMILIES)
    assert {o.family for o in unseen} == set(FAMILIES)
    for name in ("sponge", "milk carton", "towel", "apple", "bowl", "plate", "book"):
        assert name in catalog
    assert catalog.get("sponge").split == "seen"
    assert catalog.get("bowl").container and not catalog.get("bowl").pickable
    assert catalog.get("book").surface
    assert catalog.get(USER_NAME).name == USER_NAME


def test_pickable_objects_fit_the_hand() -> None:
    for obj in load_catalog():
        if obj.pickable:
            assert obj.grasp_width < 0.07, obj.name
            assert obj.description


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "objects.toml"
    path.write_text(body, encoding="utf-8")
    return path


GOOD = """
[[object]]
name = "widget"
split = "seen"
family = "box"
size = [0.05, 0.04, 0.05]
rgb = [0.1, 0.2, 0.3]
mass = 0.05
description = "a small dark blue box"
"""


def test_user_file_replaces_the_catalog(tmp_path: Path) -> None:
    catalog = load_catalog(_write(tmp_path, GOOD))
    assert [o.name for o in catalog] == ["widget"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (('family = "box"', 'family = "torus"'), "family"),
        (("size = [0.05, 0.04, 0.05]", "size = [0.05, 0.12, 0.05]"), "size"),
        (("size = [0.05, 0.04, 0.05]", "size = [0.05, 0.04]"), "size"),
        (("rgb = [0.1, 0.2, 0.3]", "rgb = [1.1, 0.2, 0.3]"), "rgb"),
        (("mass = 0.05", "mass = -1"), "mass"),
        (('split = "seen"', 'split = "train"'), "split"),
    ],
)
def test_bad_entry_names_file_entry_and_field(
    tmp_path: Path, change: tuple[str, str], field: str
) -> None:
    path = _write(tmp_path, GOOD + GOOD.replace("widget", "gadget").replace(*change))
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    message = str(info.value)
    assert str(path) in message
    assert "object #2" in message and "'gadget'" in message
    assert repr(field) in message


def test_missing_and_duplicate_entries(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="not found"):
        load_catalog(tmp_path / "nope.toml")
    with pytest.raises(CatalogError, match="duplicate"):
        load_catalog(_write(tmp_path, GOOD + GOOD))
    with pytest.raises(CatalogError, match="'description' is missing"):
        load_catalog(_write(tmp_path, GOOD.replace('description = "a small dark blue box"', "")))
