"""Rollout manifests that were damaged or are not ours: a ManifestError naming the file, never a
raw JSONDecodeError/KeyError, and the file is left as it was."""

from __future__ import annotations

import json

import pytest

from hyenamd.cluster.manifest import FORMAT, Manifest, ManifestError

from .conftest import tree_hash

GOOD_ENTRY = {"spec": {}, "status": "completed", "output": "x.h5", "attempts": 1, "retries": 0,
              "node_ids": [], "errors": [], "wall_s": 1.0, "result": None}  # fmt: skip

MANIFEST_CASES = {
    "truncated JSON": ('{"format": "hyenamd.cluster.manifest", "rollouts": {', "not valid JSON"),
    "empty file": ("", "not valid JSON"),
    "binary garbage": ("\x00\x01garbage", "not valid JSON"),
    "a JSON list": ("[1, 2, 3]", "a JSON list"),
    "other format": (json.dumps({"format": "something.else", "rollouts": {}}), "not a rollout manifest"),
    "newer version": (json.dumps({"format": FORMAT, "version": 99, "rollouts": {}}), "version"),
    "rollouts not a mapping": (json.dumps({"format": FORMAT, "version": 1, "rollouts": []}), "'rollouts'"),
    "entry lacks keys": (json.dumps({"format": FORMAT, "version": 1, "rollouts": {"r0": {"status": "completed"}}}), "lacks"),
    "entry bad status": (json.dumps({"format": FORMAT, "version": 1, "rollouts": {"r0": {**GOOD_ENTRY, "status": "exploded"}}}), "bad spec or status"),
    "entry not a mapping": (json.dumps({"format": FORMAT, "version": 1, "rollouts": {"r0": 5}}), "lacks"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(MANIFEST_CASES))
def test_damaged_manifest_is_a_clear_error(tmp_path, name):
    text, words = MANIFEST_CASES[name]
    path = tmp_path / "manifest.json"
    path.write_text(text)
    before = tree_hash(tmp_path)
    with pytest.raises(ManifestError) as e:
        Manifest(path)
    assert words in str(e.value) and str(path) in str(e.value)
    assert tree_hash(tmp_path) == before


def test_manifest_that_is_a_directory(tmp_path):
    d = tmp_path / "manifest.json"
    d.mkdir()
    with pytest.raises(ManifestError, match="is a directory"):
        Manifest(d)


def test_valid_manifest_still_loads(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format": FORMAT, "version": 1, "rollouts": {"r0": GOOD_ENTRY}}))
    assert Manifest(path).rollouts["r0"]["status"] == "completed"
